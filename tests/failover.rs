//! An agent with two collectors: when the one in use dies (`kill -9`), it fails over to the
//! other, and back when that one dies in turn; every line lands exactly once across the
//! two indexes. Real processes on loopback.

mod common;

use std::io::Write;
use std::time::Duration;

use common::*;

#[test]
fn fails_over_between_collectors_without_loss_or_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let ports = [(free_port(), free_port()), (free_port(), free_port())];
    let data = [dir.path().join("a"), dir.path().join("b")];
    let mut a = start_collector(&data[0], ports[0].0, ports[0].1);
    let bases = ports.map(|(_, http)| format!("http://127.0.0.1:{http}"));

    let log = dir.path().join("logs/app.log");
    std::fs::create_dir_all(log.parent().unwrap()).unwrap();
    let mut file = std::fs::File::create(&log).unwrap();
    let mut write = |from: usize| {
        for i in from..from + 300 {
            writeln!(file, "INFO failover line {i}").unwrap();
        }
        file.flush().unwrap();
        std::fs::metadata(&log).unwrap().len()
    };
    let agent_dir = dir.path().join("agent");
    let config = write_agent_config_with(&agent_dir, 0, &[log.display().to_string()], "");
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "collector: http://127.0.0.1:0",
        &format!("collector: [http://127.0.0.1:{}, http://127.0.0.1:{}]", ports[0].0, ports[1].0),
    );
    std::fs::write(&config, text).unwrap();
    let mut agent = start_agent(&config, &agent_dir);

    let size = write(0);
    wait_until(Duration::from_secs(30), "the first collector acknowledges", || {
        acked_offset(&agent_dir) == size
    });
    a.kill9();
    let mut b = start_collector(&data[1], ports[1].0, ports[1].1);
    let size = write(300);
    wait_until(Duration::from_secs(30), "the agent fails over to the second", || {
        acked_offset(&agent_dir) == size
    });
    b.kill9();
    let _a = start_collector(&data[0], ports[0].0, ports[0].1);
    let size = write(600);
    wait_until(Duration::from_secs(30), "the agent fails back to the first", || {
        acked_offset(&agent_dir) == size
    });
    let _b = start_collector(&data[1], ports[1].0, ports[1].1);

    std::thread::sleep(Duration::from_millis(800));
    let mut seen = std::collections::HashMap::new();
    for base in &bases {
        for hit in search(base, "failover", 10_000).hits {
            *seen.entry(hit.message).or_insert(0) += 1;
        }
    }
    assert_eq!(seen.len(), 900, "every line arrived");
    assert!(seen.values().all(|n| *n == 1), "no line is in both indexes");
    assert_eq!(total(&bases[0], "failover"), 600);
    assert_eq!(total(&bases[1], "failover"), 300);
    assert!(agent.is_running());
    agent.kill9();
    let log_text = std::fs::read_to_string(agent_dir.join("agent.log")).unwrap();
    assert!(log_text.contains("failing over"), "{log_text}");
}
