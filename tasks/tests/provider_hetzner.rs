//! The Hetzner provider (tasks::provider) against the test cloud.

use std::time::{Duration, Instant};
use tasks::provider::{Hetzner, Provider, ProviderError, ServerSpec};
use testkit::contract::Contract;
use testkit::{CloudConfig, Faults, TestCloud};

const KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGt2Xq7t0c8m3vQp3m4h6v1cW7S0W2d0oC1zJtI7m2Wb cluster";
const OTHER_KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFq0lq3kz9V1dZ8sN6uF5xR2yT4wE7pA0bC3dK9mJ1hL other";

async fn setup() -> (TestCloud, Hetzner) {
    let cloud = TestCloud::start(CloudConfig {
        action_delay: Duration::from_millis(50),
        // The contract check reads every response.
        record: true,
        ..CloudConfig::default()
    })
    .await
    .unwrap();
    let provider = Hetzner::new(cloud.endpoint(), cloud.token())
        .unwrap()
        .with_page_size(10)
        .with_action_poll(Duration::from_millis(20));
    (cloud, provider)
}

fn spec(cluster: &str, node: &str) -> ServerSpec {
    ServerSpec {
        cluster: cluster.into(),
        node: node.into(),
        role: "cluster".into(),
        server_type: "cx22".into(),
        image: "ubuntu-24.04".into(),
        location: Some("nbg1".into()),
        ssh_key: "nix-infra".into(),
        placement_group: None,
        user_data: None,
    }
}

fn assert_contract(cloud: &TestCloud) {
    let failures = Contract::load().unwrap().check_all(&cloud.recorded());
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creates_40_servers_concurrently_and_lists_only_its_cluster_across_pages() {
    let (cloud, p) = setup().await;
    p.ensure_ssh_key("nix-infra", KEY).await.unwrap();
    let again = p.ensure_ssh_key("nix-infra", KEY).await.unwrap();
    assert_eq!(again.name, "nix-infra", "ensuring twice adopts the key");
    // The same key under another name (another cluster): adopted, not refused.
    let other_cluster = p.ensure_ssh_key("nix-infra-c2", KEY).await.unwrap();
    assert_eq!(
        (other_cluster.name.as_str(), other_cluster.id),
        ("nix-infra", again.id)
    );
    let pg = p.ensure_placement_group("c1-spread").await.unwrap();
    assert_eq!(p.ensure_placement_group("c1-spread").await.unwrap(), pg);

    let t0 = Instant::now();
    let creates = (0..40).map(|i| {
        let mut s = spec("c1", &format!("node{i:02}"));
        s.placement_group = Some(pg);
        let p = p.clone();
        async move { p.create_server(&s).await }
    });
    let created: Vec<_> = futures::future::join_all(creates)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    // Concurrent: forty creates whose actions take 50 ms each finish well under 40 × 50 ms.
    assert!(
        t0.elapsed() < Duration::from_secs(2),
        "creates were sequential: {:?}",
        t0.elapsed()
    );
    let mut ids: Vec<i64> = created.iter().map(|s| s.id).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 40);
    assert!(
        created
            .iter()
            .all(|s| s.status == "running" && s.ipv4.is_some())
    );
    assert_eq!(created[7].node(), Some("node07"));
    // The placement group went through the right field: every created server is in it.
    let in_group = cloud
        .recorded()
        .iter()
        .filter(|r| r.method == "post" && r.path == "/servers" && r.status == 201)
        .filter(|r| r.body["server"]["placement_group"]["id"] == pg)
        .count();
    assert_eq!(in_group, 40);

    for i in 0..3 {
        p.create_server(&spec("other", &format!("x{i}")))
            .await
            .unwrap();
    }
    let listed = p.list_servers("c1").await.unwrap();
    assert_eq!(
        listed.len(),
        40,
        "five pages of ten, and nothing of the other cluster"
    );
    assert!(listed.iter().all(|s| s.labels["nix-infra.cluster"] == "c1"));

    // Creating an existing node adopts it.
    let same = p.create_server(&spec("c1", "node03")).await.unwrap();
    assert_eq!(same.id, created[3].id);

    for s in &listed {
        p.delete_server(s.id).await.unwrap();
    }
    p.delete_server(listed[0].id).await.unwrap(); // already gone: fine
    assert!(p.list_servers("c1").await.unwrap().is_empty());
    assert_eq!(p.list_servers("other").await.unwrap().len(), 3);
    assert_contract(&cloud);
}

#[tokio::test]
async fn adopts_the_server_when_the_create_answer_was_lost() {
    let (cloud, p) = setup().await;
    p.ensure_ssh_key("nix-infra", KEY).await.unwrap();
    cloud.set_faults(Faults {
        dropped_creates: 1,
        ..Faults::default()
    });
    let s = p.create_server(&spec("c1", "lonely")).await.unwrap();
    assert_eq!(s.name, "lonely");
    assert_eq!(
        cloud.server_names(),
        vec!["lonely".to_string()],
        "exactly one server"
    );
    assert_contract(&cloud);
}

#[tokio::test]
async fn waits_out_a_storm_of_429s_as_the_headers_say() {
    let (cloud, p) = setup().await;
    cloud.set_faults(Faults {
        rate_limited: 3,
        rate_limit_reset: Duration::from_secs(2),
        ..Faults::default()
    });
    let t0 = Instant::now();
    let listed = p.list_servers("c1").await.unwrap();
    assert!(listed.is_empty());
    assert!(
        t0.elapsed() >= Duration::from_secs(1),
        "the reset was not honoured: {:?}",
        t0.elapsed()
    );
    let limited = cloud.recorded().iter().filter(|r| r.status == 429).count();
    assert_eq!(limited, 3, "every 429 was followed by a retry");

    // With no patience left, the caller gets a retryable error that says how long to wait.
    let impatient = p.clone().with_patience(Duration::from_millis(100));
    cloud.set_faults(Faults {
        rate_limited: 1,
        rate_limit_reset: Duration::from_secs(30),
        ..Faults::default()
    });
    let err = impatient.list_servers("c1").await.unwrap_err();
    assert!(
        matches!(err, ProviderError::RateLimited(w) if w >= Duration::from_secs(28)),
        "{err}"
    );
    assert!(err.is_retryable());
    assert_contract(&cloud);
}

#[tokio::test]
async fn server_errors_are_retried_and_client_errors_are_permanent() {
    let (cloud, p) = setup().await;
    cloud.set_faults(Faults {
        server_errors: 2,
        ..Faults::default()
    });
    p.ensure_ssh_key("nix-infra", KEY).await.unwrap();
    let mut bad = spec("c1", "n1");
    bad.server_type = "cx9000".into();
    let err = p.create_server(&bad).await.unwrap_err();
    match &err {
        ProviderError::Api {
            status,
            code,
            message,
        } => {
            assert_eq!((*status, code.as_str()), (400, "invalid_input"));
            assert!(message.contains("cx9000"));
        }
        other => panic!("expected a permanent API error, got {other}"),
    }
    assert!(!err.is_retryable());

    // A key of the same name with another fingerprint is refused, naming both.
    let err = p.ensure_ssh_key("nix-infra", OTHER_KEY).await.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, ProviderError::KeyMismatch { .. }), "{text}");
    assert!(text.contains(&tasks::provider::fingerprint(OTHER_KEY).unwrap()));
    assert!(
        Hetzner::new(cloud.endpoint(), " ").is_err(),
        "an empty token is refused"
    );
    assert_contract(&cloud);
}

#[tokio::test]
async fn a_server_made_elsewhere_is_adopted_by_name_keeping_its_labels() {
    let (cloud, p) = setup().await;
    p.ensure_ssh_key("nix-infra", KEY).await.unwrap();
    // Made by another tool, with a label of its own and none of ours.
    let made: serde_json::Value = reqwest::Client::new()
        .post(format!("{}/servers", cloud.endpoint()))
        .bearer_auth(cloud.token())
        .json(
            &serde_json::json!({"name": "legacy", "server_type": "cx22", "image": "ubuntu-24.04",
            "ssh_keys": ["nix-infra"], "labels": {"owner": "dart"}}),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = made["server"]["id"].as_i64().unwrap();
    assert!(p.list_servers("c1").await.unwrap().is_empty());

    let s = p.adopt_server("c1", "legacy", "ingress").await.unwrap();
    assert_eq!(s.id, id);
    assert_eq!(s.labels["nix-infra.role"], "ingress");
    assert_eq!(s.labels["owner"], "dart");
    assert_eq!(p.list_servers("c1").await.unwrap().len(), 1);
    assert_eq!(
        p.adopt_server("c1", "legacy", "ingress").await.unwrap().id,
        id,
        "again: the same"
    );
    // Now it is c1's: another cluster cannot take it.
    let err = p.adopt_server("c2", "legacy", "cluster").await.unwrap_err();
    assert!(err.to_string().contains("belongs to cluster c1"), "{err}");
    assert!(!err.is_retryable());
    let missing = p.adopt_server("c1", "nope", "cluster").await.unwrap_err();
    assert!(missing.to_string().contains("no server named nope"));
    assert_contract(&cloud);
}
