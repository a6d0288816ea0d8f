//! The fake Hetzner API driven by Hetzner's own Rust client, faults, and the contract check.

use hcloud::apis::configuration::Configuration;
use hcloud::apis::{
    actions_api, placement_groups_api, server_types_api, servers_api, ssh_keys_api,
};
use hcloud::models;
use sandbox::{CloudConfig, Faults, TestCloud};
use std::collections::HashMap;
use std::time::{Duration, Instant};
use testkit::contract::Contract;

const PUBLIC_KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGt2Xq7t0c8m3vQp3m4h6v1cW7S0W2d0oC1zJtI7m2Wb test@nix-infra";

async fn cloud() -> TestCloud {
    TestCloud::start(CloudConfig {
        action_delay: Duration::from_millis(100),
        // The contract check reads every response.
        record: true,
        ..CloudConfig::default()
    })
    .await
    .unwrap()
}

fn client(cloud: &TestCloud) -> Configuration {
    let mut c = Configuration::new();
    c.base_path_mapping
        .insert("https://api.hetzner.cloud/v1".into(), cloud.endpoint());
    c.bearer_access_token = Some(cloud.token().into());
    c
}

/// Every response the cloud sent must match Hetzner's OpenAPI description.
fn assert_contract(cloud: &TestCloud) {
    let contract = Contract::load().unwrap();
    let recorded = cloud.recorded();
    assert!(!recorded.is_empty());
    let failures = contract.check_all(&recorded);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // The check has teeth: a server without a name, or with an unknown status, fails it.
    if let Some(r) = recorded
        .iter()
        .find(|r| r.path == "/servers/{id}" && r.status == 200)
    {
        let mut broken = r.clone();
        broken.body["server"]
            .as_object_mut()
            .unwrap()
            .remove("name");
        assert!(contract.check(&broken).is_err());
        let mut broken = r.clone();
        broken.body["server"]["status"] = "exploded".into();
        assert!(contract.check(&broken).unwrap_err().contains("exploded"));
    }
}

fn server_request(
    name: String,
    labels: &[(&str, &str)],
    pg: Option<i64>,
) -> servers_api::CreateServerParams {
    servers_api::CreateServerParams {
        create_server_request: models::CreateServerRequest {
            name,
            server_type: "cx22".into(),
            image: "ubuntu-24.04".into(),
            location: Some("fsn1".into()),
            ssh_keys: Some(vec!["deploy".into()]),
            labels: Some(
                labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect::<HashMap<_, _>>(),
            ),
            placement_group: pg,
            user_data: Some("#cloud-config\n".into()),
            ..Default::default()
        },
    }
}

async fn list_all(c: &Configuration, selector: Option<&str>) -> Vec<models::Server> {
    let mut out = Vec::new();
    let mut page = Some(1);
    while let Some(p) = page {
        let resp = servers_api::list_servers(
            c,
            servers_api::ListServersParams {
                label_selector: selector.map(str::to_string),
                page: Some(p),
                per_page: Some(25),
                ..Default::default()
            },
        )
        .await
        .unwrap();
        out.extend(resp.servers);
        page = resp.meta.pagination.next_page;
    }
    out
}

#[tokio::test]
async fn hetzners_client_creates_polls_lists_across_pages_and_deletes_60_servers() {
    let cloud = cloud().await;
    let c = client(&cloud);
    ssh_keys_api::create_ssh_key(
        &c,
        ssh_keys_api::CreateSshKeyParams {
            create_ssh_key_request: models::CreateSshKeyRequest {
                name: "deploy".into(),
                public_key: PUBLIC_KEY.into(),
                labels: None,
            },
        },
    )
    .await
    .unwrap();
    let pg = placement_groups_api::create_placementgroup(
        &c,
        placement_groups_api::CreatePlacementgroupParams {
            create_placementgroup_request: models::CreatePlacementgroupRequest::new(
                "spread".into(),
                models::create_placementgroup_request::Type::Spread,
            ),
        },
    )
    .await
    .unwrap()
    .placement_group
    .id;

    let mut actions = Vec::new();
    for i in 0..60 {
        let role = if i % 3 == 0 { "worker" } else { "ctrl" };
        let created = servers_api::create_server(
            &c,
            server_request(
                format!("node{i:02}"),
                &[("cluster", "c1"), ("role", role)],
                Some(pg),
            ),
        )
        .await
        .unwrap();
        assert_eq!(created.server.name, format!("node{i:02}"));
        assert!(
            created
                .server
                .public_net
                .ipv4
                .as_ref()
                .unwrap()
                .ip
                .starts_with("127.")
        );
        actions.push(created.action.id);
    }
    // Actions finish after the configured delay; poll the way clients do.
    let deadline = Instant::now() + Duration::from_secs(20);
    for id in actions {
        loop {
            let a = actions_api::get_action(&c, actions_api::GetActionParams { id })
                .await
                .unwrap()
                .action;
            if a.status == models::action::Status::Success {
                assert_eq!(a.progress, 100);
                break;
            }
            assert!(Instant::now() < deadline, "action {id} never finished");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    let all = list_all(&c, None).await;
    assert_eq!(all.len(), 60, "pagination must reach every server");
    let mut names: Vec<&str> = all.iter().map(|s| s.name.as_str()).collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), 60);
    assert!(
        all.iter()
            .all(|s| matches!(&s.placement_group, Some(Some(g)) if g.id == pg))
    );
    let workers = list_all(&c, Some("cluster=c1,role=worker")).await;
    assert_eq!(workers.len(), 20);
    assert!(list_all(&c, Some("role in (nope)")).await.is_empty());

    let one = servers_api::get_server(&c, servers_api::GetServerParams { id: all[1].id }).await;
    assert_eq!(one.unwrap().server.unwrap().name, all[1].name);
    for s in &all {
        servers_api::delete_server(&c, servers_api::DeleteServerParams { id: s.id })
            .await
            .unwrap();
    }
    assert!(list_all(&c, None).await.is_empty());
    let gone = servers_api::get_server(&c, servers_api::GetServerParams { id: all[0].id }).await;
    assert!(matches!(gone, Err(hcloud::apis::Error::ResponseError(r)) if r.status == 404));
    assert_contract(&cloud);
}

#[tokio::test]
async fn a_429_carries_hetzners_rate_limit_headers() {
    let cloud = cloud().await;
    cloud.set_faults(Faults {
        rate_limited: 2,
        rate_limit_reset: Duration::from_secs(3),
        ..Faults::default()
    });
    let http = reqwest::Client::new();
    let get = || {
        http.get(format!("{}/servers", cloud.endpoint()))
            .bearer_auth(cloud.token())
            .send()
    };
    for _ in 0..2 {
        let r = get().await.unwrap();
        assert_eq!(r.status(), 429);
        let h = r.headers();
        assert_eq!(h["RateLimit-Limit"], "3600");
        assert_eq!(h["RateLimit-Remaining"], "0");
        let reset: u64 = h["RateLimit-Reset"].to_str().unwrap().parse().unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        assert!(
            reset >= now + 2 && reset <= now + 4,
            "reset {reset} vs now {now}"
        );
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(body["error"]["code"], "rate_limit_exceeded");
    }
    assert_eq!(
        get().await.unwrap().status(),
        200,
        "the limit lifts after two requests"
    );

    cloud.set_faults(Faults {
        server_errors: 1,
        ..Faults::default()
    });
    assert_eq!(get().await.unwrap().status(), 503);
    let unauthorized = http
        .get(format!("{}/servers", cloud.endpoint()))
        .bearer_auth("wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(unauthorized.status(), 401);
    assert_contract(&cloud);
}

#[tokio::test]
async fn a_dropped_create_response_still_leaves_the_server_created() {
    let cloud = cloud().await;
    let c = client(&cloud);
    cloud.set_faults(Faults {
        dropped_creates: 1,
        ..Faults::default()
    });
    let mut req = server_request("lost".into(), &[("cluster", "c1")], None);
    req.create_server_request.ssh_keys = None;
    let result = servers_api::create_server(&c, req).await;
    assert!(result.is_err(), "the client must not see a response");
    assert_eq!(cloud.server_names(), vec!["lost".to_string()]);
    let found = servers_api::list_servers(
        &c,
        servers_api::ListServersParams {
            name: Some("lost".into()),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(found.servers.len(), 1);
    // Creating it again is refused: a client must adopt, not duplicate.
    let mut again = server_request("lost".into(), &[], None);
    again.create_server_request.ssh_keys = None;
    let dup = servers_api::create_server(&c, again).await;
    assert!(matches!(dup, Err(hcloud::apis::Error::ResponseError(r)) if r.status == 409));
    assert_contract(&cloud);
}

#[tokio::test]
async fn catalog_and_errors_match_the_contract() {
    let cloud = cloud().await;
    let http = reqwest::Client::new();
    let call = |method: reqwest::Method, path: &str, body: Option<serde_json::Value>| {
        let mut rb = http
            .request(method, format!("{}{path}", cloud.endpoint()))
            .bearer_auth(cloud.token());
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        rb.send()
    };
    for path in [
        "/server_types",
        "/locations",
        "/images",
        "/ssh_keys",
        "/placement_groups",
        "/servers?page=2&per_page=5",
    ] {
        assert_eq!(
            call(reqwest::Method::GET, path, None)
                .await
                .unwrap()
                .status(),
            200,
            "{path}"
        );
    }
    let bad = call(
        reqwest::Method::POST,
        "/servers",
        Some(serde_json::json!({"name": "x", "server_type": "nope", "image": "debian-12"})),
    );
    assert_eq!(bad.await.unwrap().status(), 400);
    assert_eq!(
        call(reqwest::Method::GET, "/servers/999", None)
            .await
            .unwrap()
            .status(),
        404
    );
    assert_eq!(
        call(reqwest::Method::GET, "/actions/999", None)
            .await
            .unwrap()
            .status(),
        404
    );
    assert_eq!(
        call(reqwest::Method::GET, "/servers?per_page=500", None)
            .await
            .unwrap()
            .status(),
        400
    );
    assert_eq!(
        call(reqwest::Method::GET, "/servers/1/actions", None)
            .await
            .unwrap()
            .status(),
        200
    );
    assert_contract(&cloud);
}

/// One entry of `server_types[].locations[]` as the current Hetzner API sends it
/// and current clients decode it: every field is required. (The `hcloud`
/// crate's `ServerTypeLocation`, as of 0.26, the newest release, was generated
/// from an older description and knows only `id`, `name` and `deprecation`.)
#[derive(serde::Deserialize, Debug)]
#[allow(dead_code)]
struct CurrentServerTypeLocation {
    id: i64,
    name: String,
    deprecation: Option<serde_json::Value>,
    available: bool,
    recommended: bool,
}

#[derive(serde::Deserialize, Debug)]
struct CurrentServerType {
    name: String,
    locations: Vec<CurrentServerTypeLocation>,
}

#[derive(serde::Deserialize, Debug)]
struct CurrentServerTypes {
    server_types: Vec<CurrentServerType>,
}

#[tokio::test]
async fn current_clients_list_server_types_whose_locations_say_available_and_recommended() {
    let cloud = cloud().await;
    let c = client(&cloud);
    let listed = server_types_api::list_server_types(&c, Default::default())
        .await
        .unwrap();
    assert!(
        listed.server_types.iter().any(|t| t.name == "cx22"),
        "{listed:?}"
    );

    // The same list through the current API's model, where the flags are required.
    let body = c
        .client
        .get(format!("{}/server_types", cloud.endpoint()))
        .bearer_auth(cloud.token())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let current: CurrentServerTypes = serde_json::from_str(&body)
        .unwrap_or_else(|e| panic!("a current client cannot decode the server types: {e}\n{body}"));
    assert_eq!(current.server_types.len(), listed.server_types.len());
    for (t, old) in current.server_types.iter().zip(&listed.server_types) {
        assert_eq!(t.name, old.name);
        assert_eq!(t.locations.len(), old.locations.len());
        assert!(!t.locations.is_empty(), "{} has no location", t.name);
        assert!(t.locations.iter().all(|l| l.available), "{t:?}");
        // The default location (a create that names none lands there) is the recommended one.
        let recommended: Vec<&str> = t
            .locations
            .iter()
            .filter(|l| l.recommended)
            .map(|l| l.name.as_str())
            .collect();
        assert_eq!(recommended, ["fsn1"], "{}", t.name);
    }
    assert_contract(&cloud);
}

#[tokio::test]
async fn a_server_types_list_without_recommended_or_available_violates_the_contract() {
    let cloud = cloud().await;
    server_types_api::list_server_types(&client(&cloud), Default::default())
        .await
        .unwrap();
    let contract = Contract::load().unwrap();
    let recorded = cloud.recorded();
    let list = recorded
        .iter()
        .find(|r| r.method == "get" && r.path == "/server_types" && r.status == 200)
        .expect("the server types list was recorded");
    contract.check(list).unwrap();
    let without = |field: &str| {
        let mut broken = list.clone();
        broken.body["server_types"][0]["locations"][1]
            .as_object_mut()
            .unwrap()
            .remove(field);
        contract.check(&broken)
    };
    for field in ["recommended", "available"] {
        let err = without(field).unwrap_err();
        assert!(err.contains(&format!("\"{field}\"")), "{field}: {err}");
        assert!(err.contains("/server_types/0/locations/1"), "{err}");
    }
    // The published fields stay required too.
    assert!(without("deprecation").is_err());
    let mut broken = list.clone();
    broken.body["server_types"][2]["locations"][0]["recommended"] = "yes".into();
    assert!(contract.check(&broken).is_err());
}
