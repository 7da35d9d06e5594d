//! What `sluice-bench` shares with the black-box tests: [`fake_kube`], the local Kubernetes
//! API double both drive (no real API server can run here).

pub mod fake_kube;
