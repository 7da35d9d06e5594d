//! What `sluice-bench` shares with the black-box tests: local doubles of the services no real
//! server can stand in for here — [`fake_kube`] (the Kubernetes API), [`fake_dingtalk`] (DingTalk
//! robots) and [`fake_sms`] (Aliyun SMS) — which both drive.

pub mod fake_chatbot;
pub mod fake_dingtalk;
pub mod fake_kube;
pub mod fake_sms;

/// A runtime of one worker and a listener on a free loopback port, with its `http://` base URL:
/// each double serves from its own thread, so a test's blocking calls never starve it.
fn loopback() -> (tokio::runtime::Runtime, tokio::net::TcpListener, String) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("a runtime for a test double");
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("a loopback port for a test double");
    let base = format!("http://{}", listener.local_addr().expect("bound"));
    (runtime, listener, base)
}
