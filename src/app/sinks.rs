//! The sinks the flags ask for: the local index (or the blackhole), Elasticsearch, Kafka,
//! Prometheus remote-write.

use std::sync::Arc;

use sluice_collector::runner::SinkTask;
use sluice_collector::sink::Sink;
use sluice_collector::sinks::blackhole::BlackholeSink;
use sluice_collector::sinks::elasticsearch::{
    ElasticsearchAuth, ElasticsearchConfig, ElasticsearchSink,
};
use sluice_collector::sinks::kafka::{KafkaConfig, KafkaSink};
use sluice_collector::sinks::remote_write::{RemoteWriteConfig, RemoteWriteSink};
use sluice_collector::wal::Wal;
use sluice_query::Store;

use super::CollectorArgs;

pub(super) async fn build(
    args: &CollectorArgs,
    wal: &Arc<Wal>,
    store: &Arc<Store>,
) -> anyhow::Result<Vec<SinkTask>> {
    let index = args.index();
    let mut sinks = vec![SinkTask {
        sink: match args.blackhole {
            true => Box::new(BlackholeSink::new(wal.end())),
            false => Box::new(index.build(store.clone(), wal.subscribe())),
        },
        flush_interval: index.commit_interval,
    }];
    if let Some(es) = elasticsearch(args) {
        let flush_interval = es.flush_interval;
        let sink =
            ElasticsearchSink::new(es).map_err(|e| anyhow::anyhow!("sink elasticsearch: {e}"))?;
        if let Err(e) = sink.healthcheck().await {
            // Not fatal: the sink retries, and the WAL keeps its records meanwhile.
            tracing::warn!(error = %e, "Elasticsearch is not reachable yet");
        }
        sinks.push(SinkTask { sink: Box::new(sink), flush_interval });
    }
    if let Some(kafka) = kafka(args) {
        let flush_interval = kafka.flush_interval;
        let sink = KafkaSink::new(kafka).map_err(|e| anyhow::anyhow!("sink kafka: {e}"))?;
        sinks.push(SinkTask { sink: Box::new(sink), flush_interval });
    }
    if let Some(url) = &args.remote_write {
        let mut config = RemoteWriteConfig::new(url, args.data_dir.join("sinks/remote-write"));
        config.bearer_token = args.remote_write_token.clone();
        config.ca_file = args.remote_write_ca_file.clone();
        let flush_interval = config.flush_interval;
        let sink =
            RemoteWriteSink::new(config).map_err(|e| anyhow::anyhow!("sink remote-write: {e}"))?;
        sinks.push(SinkTask { sink: Box::new(sink), flush_interval });
    }
    Ok(sinks)
}

fn elasticsearch(args: &CollectorArgs) -> Option<ElasticsearchConfig> {
    let url = args.elasticsearch.as_ref()?;
    let mut es = ElasticsearchConfig::new(url, args.data_dir.join("sinks/elasticsearch"));
    es.index = args.es_index.clone();
    es.data_stream = args.es_data_stream;
    es.ca_file = args.es_ca_file.clone();
    es.auth = match (&args.es_user, &args.es_password, &args.es_api_key) {
        (Some(user), password, _) => ElasticsearchAuth::Basic {
            user: user.clone(),
            password: password.clone().unwrap_or_default(),
        },
        (None, _, Some(key)) => ElasticsearchAuth::ApiKey(key.clone()),
        _ => ElasticsearchAuth::None,
    };
    Some(es)
}

fn kafka(args: &CollectorArgs) -> Option<KafkaConfig> {
    let brokers = args.kafka.as_ref()?;
    let mut kafka = KafkaConfig::new(brokers, args.data_dir.join("sinks/kafka"));
    kafka.topic = args.kafka_topic.clone();
    kafka.metrics_topic = args.kafka_metrics_topic.clone();
    kafka.encoding = args.kafka_encoding;
    kafka.compression = args.kafka_compression;
    kafka.linger = args.kafka_linger;
    kafka.max_message_bytes = args.kafka_max_message_size.as_u64() as usize;
    kafka.transactional_id = args.kafka_transactional_id.clone();
    kafka.options = args.kafka_options();
    Some(kafka)
}
