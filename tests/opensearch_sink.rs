//! The Elasticsearch/OpenSearch sink against a real OpenSearch 2.19 node and, for the main
//! case, a real Elasticsearch 7.10 node (`scripts/test-servers start`, which `scripts/test`
//! runs; `OPENSEARCH_URL` and `ELASTICSEARCH_URL` say where): every record delivered
//! exactly once, counted in OpenSearch, also across a `kill -9` of `sluice up` mid-stream;
//! records that collide with a mapping are refused by OpenSearch and land in the dead-letter
//! file with the reason, while the local index keeps everything; Chinese phrases are found
//! through the index template's `cjk` analyzer.

mod common;

use std::io::Write;
use std::time::Duration;

use common::*;
use serde_json::{Value, json};

fn opensearch() -> String {
    std::env::var("OPENSEARCH_URL").expect(
        "OPENSEARCH_URL is not set: run `bash scripts/test-servers start` and export its `env` (scripts/test does)",
    )
}

fn es(method: reqwest::Method, url: &str, body: Option<Value>) -> Value {
    let client = reqwest::blocking::Client::new();
    let mut request = client.request(method, url).timeout(Duration::from_secs(30));
    if let Some(b) = body {
        request = request.json(&b);
    }
    let response = request.send().unwrap();
    let status = response.status();
    let body: Value = response.json().unwrap();
    assert!(status.is_success(), "{url}: {status}: {body}");
    body
}

fn count(os: &str, indexes: &str, query: Value) -> u64 {
    // A count while the sink is creating an index can find its shard still starting ("all
    // shards failed", 503); that is asked again, anything else fails the test.
    let started = std::time::Instant::now();
    loop {
        es(reqwest::Method::POST, &format!("{os}/{indexes}/_refresh"), None);
        let response = reqwest::blocking::Client::new()
            .post(format!("{os}/{indexes}/_count"))
            .json(&json!({ "query": query }))
            .timeout(Duration::from_secs(30))
            .send()
            .unwrap();
        let status = response.status();
        let body: Value = response.json().unwrap();
        if status == reqwest::StatusCode::SERVICE_UNAVAILABLE && started.elapsed().as_secs() < 30 {
            std::thread::sleep(Duration::from_millis(200));
            continue;
        }
        assert!(status.is_success(), "{indexes}/_count: {status}: {body}");
        return body["count"].as_u64().unwrap();
    }
}

#[test]
fn every_record_once_in_opensearch_refusals_in_the_dead_letter_file() {
    every_record_once_refusals_in_the_dead_letter_file(&opensearch());
}

/// The same against a real Elasticsearch node (7.10.2, `ELASTICSEARCH_URL`), which answers
/// with Elasticsearch's own headers and errors.
#[test]
fn every_record_once_in_elasticsearch_refusals_in_the_dead_letter_file() {
    let es = std::env::var("ELASTICSEARCH_URL").expect(
        "ELASTICSEARCH_URL is not set: run `bash scripts/test-servers start` and export its `env` (scripts/test does)",
    );
    assert!(
        http_get(&es).is_some_and(|b| b.contains("\"number\" : \"7.")),
        "not Elasticsearch 7 at {es}"
    );
    every_record_once_refusals_in_the_dead_letter_file(&es);
}

/// 2,500 records once, 200 refused by a mapping into the dead-letter file, 1,000 more across a
/// `kill -9` of `sluice up`, and the template's `cjk` analyzer, on the server at `os`.
fn every_record_once_refusals_in_the_dead_letter_file(os: &str) {
    let os = os.to_owned();
    let dir = tempfile::tempdir().unwrap();
    let prefix = format!("t{}x{}", std::process::id(), chrono::Utc::now().timestamp_micros());
    let (prod, _dev, watch) = two_namespaces(dir.path(), 1_500, 1_000);
    // A third namespace whose index says `level` is a number: OpenSearch refuses its records.
    let bad = dir.path().join("var/log/pods/bad_pay-9_u9/app/0.log");
    std::fs::create_dir_all(bad.parent().unwrap()).unwrap();
    std::fs::write(&bad, cri_lines("bad", 200, 10_000, 2_700)).unwrap();
    es(
        reqwest::Method::PUT,
        &format!("{os}/{prefix}-bad-2026.11.30"),
        Some(json!({"mappings": {"properties": {"level": {"type": "integer"}}}})),
    );

    let data = dir.path().join("data");
    let args = |extra: &mut Vec<std::ffi::OsString>| {
        extra.extend(["--elasticsearch".into(), os.clone().into()]);
        extra
            .extend(["--es-index".into(), format!("{prefix}-{{namespace}}-{{yyyy.MM.dd}}").into()]);
    };
    let mut extra = Vec::new();
    args(&mut extra);
    let extra_refs: Vec<&std::ffi::OsStr> = extra.iter().map(|s| s.as_os_str()).collect();
    let (mut up, base) = start_up_with(&data, std::slice::from_ref(&watch), &extra_refs);
    let good = format!("{prefix}-prod-*,{prefix}-dev-*");
    let dead_letters = data.join("sinks/elasticsearch/dead-letter.ndjson");
    let dead = || std::fs::read_to_string(&dead_letters).map_or(0, |t| t.lines().count());
    wait_until(
        Duration::from_secs(60),
        "2,500 documents in OpenSearch and 200 dead letters",
        || count(&os, &good, json!({"match_all": {}})) >= 2_500 && dead() >= 200,
    );
    assert_eq!(count(&os, &good, json!({"match_all": {}})), 2_500);
    assert_eq!(dead(), 200);
    assert_eq!(total(&base, "namespace:bad"), 200, "the local index keeps what OpenSearch refused");
    let letter: Value = serde_json::from_str(
        std::fs::read_to_string(&dead_letters).unwrap().lines().next().unwrap(),
    )
    .unwrap();
    assert_eq!(letter["status"], 400);
    assert_eq!(letter["reason"]["type"], "mapper_parsing_exception");
    assert_eq!(letter["index"], format!("{prefix}-bad-2026.11.30"));
    assert_eq!(letter["document"]["namespace"], "bad");

    // More lines, and sluice up killed while they ship: what it had not flushed to
    // OpenSearch is sent again from the WAL after the restart, and refused as duplicates.
    let mut f = std::fs::OpenOptions::new().append(true).open(&prod).unwrap();
    f.write_all(cri_lines("prod", 1_000, 20_000, 2_700).as_bytes()).unwrap();
    drop(f);
    std::thread::sleep(Duration::from_millis(400));
    up.kill9();
    let (_up, _base) = start_up_with(&data, std::slice::from_ref(&watch), &extra_refs);
    wait_until(Duration::from_secs(60), "3,500 documents in OpenSearch", || {
        count(&os, &good, json!({"match_all": {}})) >= 3_500
    });
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(count(&os, &good, json!({"match_all": {}})), 3_500, "each record exactly once");
    assert_eq!(dead(), 200);

    // The template's cjk analyzer finds the Chinese phrase in exactly the lines that hold it.
    let phrase = count(&os, &good, json!({"match_phrase": {"message": "支付超时"}}));
    assert_eq!(phrase, 350);
    let doc = &es(
        reqwest::Method::POST,
        &format!("{os}/{prefix}-prod-*/_search"),
        Some(json!({"query": {"match_phrase": {"message": "line 20005"}}})),
    )["hits"]["hits"][0];
    assert_eq!(doc["_source"]["pod"], "pay-1");
    assert_eq!(doc["_source"]["level"], "info");
    assert_eq!(doc["_id"], doc["_source"]["sluice_id"]);
}

/// A proxy in front of OpenSearch. With `inject`, it answers 429 for every fourth item of
/// the first bulk requests, after OpenSearch stored them: the sink must send those again, and
/// OpenSearch's 409 on the resend must count as delivered. With `tls`, it speaks HTTPS.
/// Returns its URL, the ids it answered 429 for, and the `Authorization` headers it saw.
type Injected = std::sync::Arc<std::sync::Mutex<std::collections::HashSet<String>>>;
/// Every `Authorization` header the proxy saw.
type Seen = std::sync::Arc<std::sync::Mutex<std::collections::HashSet<String>>>;

fn proxy(
    upstream: String,
    inject: bool,
    tls: Option<std::sync::Arc<rustls::ServerConfig>>,
) -> (String, Injected, Seen) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let url = match tls {
        Some(_) => format!("https://localhost:{port}"),
        None => format!("http://127.0.0.1:{port}"),
    };
    let injected = Injected::default();
    let seen = Seen::default();
    let (counter, authorizations) = (injected.clone(), seen.clone());
    std::thread::spawn(move || {
        let client = reqwest::blocking::Client::new();
        let mut bulks = 0;
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let mut stream: Box<dyn ReadWrite> = match &tls {
                Some(config) => Box::new(rustls::StreamOwned::new(
                    rustls::ServerConnection::new(config.clone()).unwrap(),
                    stream,
                )),
                None => Box::new(stream),
            };
            let _ = serve(
                &mut stream,
                &client,
                &upstream,
                inject,
                &mut bulks,
                &counter,
                &authorizations,
            );
        }
    });
    (url, injected, seen)
}

trait ReadWrite: std::io::Read + std::io::Write + Send {}
impl<T: std::io::Read + std::io::Write + Send> ReadWrite for T {}

fn serve(
    stream: &mut Box<dyn ReadWrite>,
    client: &reqwest::blocking::Client,
    upstream: &str,
    inject: bool,
    bulks: &mut usize,
    counter: &Injected,
    authorizations: &Seen,
) -> std::io::Result<()> {
    use std::io::{BufRead, BufReader, Read};
    let mut reader = BufReader::new(stream);
    let mut request_line = String::new();
    if reader.read_line(&mut request_line)? == 0 {
        return Ok(());
    }
    let mut parts = request_line.split_whitespace();
    let (method, path) =
        (parts.next().unwrap_or("GET").to_owned(), parts.next().unwrap_or("/").to_owned());
    let mut headers = Vec::new();
    let mut length = 0;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line)?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let Some((name, value)) = line.split_once(':') else { continue };
        if name.eq_ignore_ascii_case("content-length") {
            length = value.trim().parse().unwrap_or(0);
        }
        if name.eq_ignore_ascii_case("authorization") {
            authorizations.lock().unwrap().insert(value.trim().to_owned());
        }
        headers.push((name.to_owned(), value.trim().to_owned()));
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body)?;
    let mut forward =
        client.request(method.parse().unwrap(), format!("{upstream}{path}")).body(body);
    for (name, value) in &headers {
        if !["host", "content-length", "connection"].contains(&name.to_lowercase().as_str()) {
            forward = forward.header(name, value);
        }
    }
    let answer = forward.send().map_err(std::io::Error::other)?;
    let status = answer.status().as_u16();
    let mut text = answer.text().map_err(std::io::Error::other)?;
    if inject && path.starts_with("/_bulk") && status == 200 && *bulks < 3 {
        *bulks += 1;
        let mut v: Value = serde_json::from_str(&text).unwrap();
        for (i, item) in v["items"].as_array_mut().unwrap().iter_mut().enumerate() {
            if i % 4 == 1 {
                item["create"]["status"] = json!(429);
                item["create"]["error"] = json!({"type": "es_rejected_execution_exception"});
                let id = item["create"]["_id"].as_str().unwrap().to_owned();
                counter.lock().unwrap().insert(id);
            }
        }
        v["errors"] = json!(true);
        text = v.to_string();
    }
    let stream = reader.get_mut();
    write!(
        stream,
        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
        text.len()
    )?;
    stream.flush()
}

#[test]
fn items_answered_429_are_sent_again_and_counted_once() {
    let os = opensearch();
    let (proxy, injected, seen) = proxy(os.clone(), true, None);
    let dir = tempfile::tempdir().unwrap();
    let prefix = format!("r{}x{}", std::process::id(), chrono::Utc::now().timestamp_micros());
    let (_prod, _dev, watch) = two_namespaces(dir.path(), 500, 300);
    let index = format!("{prefix}-{{namespace}}-{{yyyy.MM.dd}}");
    let extra: [&std::ffi::OsStr; 6] = [
        "--elasticsearch".as_ref(),
        proxy.as_ref(),
        "--es-index".as_ref(),
        index.as_ref(),
        "--es-user".as_ref(),
        "shipper".as_ref(),
    ];
    // The password comes from the environment, never the command line.
    let env = [("SLUICE_ES_PASSWORD", "s3cret-password")];
    let data = dir.path().join("data");
    let (_up, base) = start_up_with_env(&data, &[watch], &extra, &env);
    let all = format!("{prefix}-*");
    wait_until(Duration::from_secs(60), "800 documents in OpenSearch", || {
        count(&os, &all, json!({"match_all": {}})) >= 800
            && metric(&base, "sluice_sink_elasticsearch_delivered_total") >= 800.0
    });
    std::thread::sleep(Duration::from_secs(1));
    let injected = injected.lock().unwrap().len() as f64;
    assert!(injected > 0.0);
    assert_eq!(count(&os, &all, json!({"match_all": {}})), 800);
    assert_eq!(metric(&base, "sluice_sink_elasticsearch_delivered_total"), 800.0);
    assert_eq!(metric(&base, "sluice_sink_elasticsearch_duplicates_total"), injected);
    assert!(metric(&base, "sluice_sink_elasticsearch_retried_total") >= injected);
    // Basic auth from --es-user and SLUICE_ES_PASSWORD, on every request.
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert!(seen.contains("Basic c2hpcHBlcjpzM2NyZXQtcGFzc3dvcmQ="), "{seen:?}");
    let log = std::fs::read_to_string(data.join("logs/up.log")).unwrap();
    assert!(
        !log.contains("s3cret-password") && !log.contains("c2hpcHBlcjpzM2NyZXQt"),
        "a secret in the log"
    );
}

#[test]
fn data_streams_take_the_records_once() {
    let os = opensearch();
    let dir = tempfile::tempdir().unwrap();
    let prefix = format!("s{}x{}", std::process::id(), chrono::Utc::now().timestamp_micros());
    let (_prod, _dev, watch) = two_namespaces(dir.path(), 200, 100);
    let index = format!("{prefix}-{{namespace}}");
    let extra: [&std::ffi::OsStr; 5] = [
        "--elasticsearch".as_ref(),
        os.as_ref(),
        "--es-index".as_ref(),
        index.as_ref(),
        "--es-data-stream".as_ref(),
    ];
    let (_up, _base) = start_up_with(&dir.path().join("data"), &[watch], &extra);
    let all = format!("{prefix}-*");
    wait_until(Duration::from_secs(60), "300 documents in the data streams", || {
        count(&os, &all, json!({"match_all": {}})) >= 300
    });
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(count(&os, &all, json!({"match_all": {}})), 300);
    let streams = es(reqwest::Method::GET, &format!("{os}/_data_stream/{prefix}-*"), None);
    let mut names: Vec<&str> = streams["data_streams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    names.sort_unstable();
    assert_eq!(names, [format!("{prefix}-dev"), format!("{prefix}-prod")]);
}

/// A TLS server for `localhost` with a certificate from a CA made here; returns its config and
/// the CA's PEM file.
fn tls_server(dir: &std::path::Path) -> (std::sync::Arc<rustls::ServerConfig>, std::path::PathBuf) {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert =
        CertificateParams::new(vec!["localhost".to_owned()]).unwrap().signed_by(&key, &ca).unwrap();
    let ca_file = dir.join("es-ca.pem");
    std::fs::write(&ca_file, ca.pem()).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![cert.der().clone()],
        rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
    )
    .unwrap();
    (std::sync::Arc::new(config), ca_file)
}

#[test]
fn https_with_a_private_ca() {
    let os = opensearch();
    let dir = tempfile::tempdir().unwrap();
    let (config, ca_file) = tls_server(dir.path());
    let (url, _, _) = proxy(os.clone(), false, Some(config));
    let prefix = format!("h{}x{}", std::process::id(), chrono::Utc::now().timestamp_micros());
    let (_prod, _dev, watch) = two_namespaces(dir.path(), 200, 100);
    let index = format!("{prefix}-{{namespace}}");
    // Without the CA, the certificate is not trusted: nothing is sent, the sink is unhealthy.
    let untrusted: [&std::ffi::OsStr; 4] =
        ["--elasticsearch".as_ref(), url.as_ref(), "--es-index".as_ref(), index.as_ref()];
    let (mut up, base) =
        start_up_with(&dir.path().join("untrusted"), std::slice::from_ref(&watch), &untrusted);
    wait_until(Duration::from_secs(30), "the untrusted sink fails", || {
        metric(&base, "sluice_sink_errors_total{sink=\"elasticsearch\"}") > 0.0
    });
    assert_eq!(metric(&base, "sluice_sink_healthy{sink=\"elasticsearch\"}"), 0.0);
    up.kill9();
    let trusted: [&std::ffi::OsStr; 6] = [
        "--elasticsearch".as_ref(),
        url.as_ref(),
        "--es-index".as_ref(),
        index.as_ref(),
        "--es-ca-file".as_ref(),
        ca_file.as_os_str(),
    ];
    let (_up, _base) = start_up_with(&dir.path().join("trusted"), &[watch], &trusted);
    let all = format!("{prefix}-*");
    wait_until(Duration::from_secs(60), "300 documents over https", || {
        count(&os, &all, json!({"match_all": {}})) >= 300
    });
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(count(&os, &all, json!({"match_all": {}})), 300);
}
