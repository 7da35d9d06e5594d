// Starts one Elasticsearch 7.10 node on loopback for tests, with codelibs'
// elasticsearch-cluster-runner (its main class exits with status 1 and no message on
// any failure, so this launcher prints the cause). Arguments: <base dir> <base http port>.
// The node serves HTTP on base port + 1; the runner only accepts ports below 9299.
public class ElasticsearchNode {
    public static void main(String[] args) throws Exception {
        org.codelibs.elasticsearch.runner.ElasticsearchClusterRunner runner = new org.codelibs.elasticsearch.runner.ElasticsearchClusterRunner();
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            try {
                runner.close();
            } catch (Exception e) {
                e.printStackTrace();
            }
        }));
        // A test node on a busy disk must not refuse indexes: the disk watermarks are off.
        // Transport ports away from the OpenSearch node's (9300 and up).
        runner.onBuild((number, settings) -> settings
                .put("cluster.routing.allocation.disk.threshold_enabled", false)
                .put("transport.port", "9350-9399"));
        try {
            runner.build("-basePath", args[0], "-numOfNode", "1", "-baseHttpPort", args[1], "-clusterName", "sluice-test");
        } catch (Throwable t) {
            t.printStackTrace();
            System.exit(1);
        }
        System.out.println("sluice: elasticsearch node started");
        Thread.currentThread().join();
    }
}
