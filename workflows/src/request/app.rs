//! Checks of `app …`, `registry publish-image` and `secrets rotate`.

use super::node::{existing, node};
use super::{Checked, Request, args_json, base_input, canonical, refused, to_json};
use crate::cluster::{Cluster, ClusterError};
use crate::domain::{NodeName, Role};
use crate::node::args::{AppArgs, FromAction, PublishArgs, RotateArgs};
use std::collections::BTreeMap;

fn app_args(c: &Cluster, app: &str, kind: &str) -> Result<AppArgs, ClusterError> {
    if !matches!(kind, "service" | "backend" | "frontend") {
        return Err(refused(format!(
            "--kind {kind}: kinds are service, backend and frontend"
        )));
    }
    c.need(&[format!("app_modules/{app}")], "no such app")?;
    Ok(AppArgs {
        app: app.to_string(),
        kind: kind.to_string(),
        port: None,
        env_prefix: None,
        env: BTreeMap::new(),
    })
}

/// Whether `nodes/<node>.nix` names `app_modules/<app>`.
fn imports(c: &Cluster, node: &NodeName, app: &str) -> bool {
    let file = c.dir.join("nodes").join(format!("{node}.nix"));
    let text = std::fs::read_to_string(file).unwrap_or_default();
    crate::node::node_apps(&c.dir, &text)
        .iter()
        .any(|a| a == app)
}

/// Deploy needs every node to import the app; remove needs none to.
fn check_imports(
    c: &Cluster,
    list: &[(NodeName, Role)],
    app: &str,
    deploying: bool,
) -> Result<(), ClusterError> {
    for (n, _) in list {
        if imports(c, n, app) == deploying {
            continue;
        }
        return Err(refused(if deploying {
            format!("nodes/{n}.nix does not import ./app_modules/{app}; add it there first")
        } else {
            format!("nodes/{n}.nix still imports ./app_modules/{app}; remove that import first")
        }));
    }
    Ok(())
}

fn env_map(entries: &[String]) -> Result<BTreeMap<String, String>, ClusterError> {
    entries
        .iter()
        .map(|kv| {
            kv.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .ok_or_else(|| refused(format!("--env-var {kv}: give KEY=VALUE")))
        })
        .collect()
}

/// The checked run of an app, publish or rotate request.
pub(super) async fn check(
    r: Request,
    c: &Cluster,
    run_id: Option<String>,
) -> Result<Checked, ClusterError> {
    use Request::*;
    c.need_init()?;
    let mut i = base_input(c, Vec::new());
    let as_nodes = |list: &[(NodeName, Role)]| list.iter().map(|(n, r)| node(n, *r)).collect();
    let deploying = matches!(r, AppDeploy { .. });
    let workflow = match r {
        AppRegister {
            app,
            kind,
            port,
            env_prefix,
            env,
        } => {
            let args = AppArgs {
                port: Some(port),
                env_prefix,
                env: env_map(&env)?,
                ..app_args(c, &app, &kind)?
            };
            i.args = args_json(&args);
            "app.register"
        }
        AppDeploy { app, kind, target } | AppRemove { app, kind, target } => {
            i.args = args_json(&app_args(c, &app, &kind)?);
            let list = existing(c, &target, false).await?;
            check_imports(c, &list, &app, deploying)?;
            c.need_types(list.iter().map(|(_, r)| *r))?;
            i.nodes = as_nodes(&list);
            if deploying {
                "app.deploy"
            } else {
                "app.remove"
            }
        }
        AppRegisterInstance { app, kind, target } => {
            i.args = args_json(&app_args(c, &app, &kind)?);
            i.nodes = as_nodes(&existing(c, &target, false).await?);
            "app.register_instance"
        }
        AppUnregisterInstance { app, kind, target } => {
            i.args = args_json(&app_args(c, &app, &kind)?);
            i.nodes = as_nodes(&existing(c, &target, false).await?);
            "app.unregister_instance"
        }
        AppUnregister { app, kind } => {
            i.args = args_json(&app_args(c, &app, &kind)?);
            "app.unregister"
        }
        PublishImage {
            file,
            target,
            image_name,
            image_tag,
            ..
        } => {
            if let Some(name) = image_name.or(image_tag) {
                return Err(refused(format!(
                    "--image-name/--image-tag {name}: pushing to a registry on a node is not \
                     supported; without them, `registry publish-image --file F --target NODES` \
                     loads the archive into podman on each of the nodes, under the names it was saved with"
                )));
            }
            let file = canonical(&file, "--file")?;
            i.nodes = as_nodes(&publish_targets(c, target.as_deref()).await?);
            i.args = args_json(&PublishArgs { file });
            "image.publish"
        }
        RotateSecret {
            name,
            bytes,
            from_action,
            action_args,
        } => {
            i.args = args_json(&rotate_args(c, &name, bytes, from_action, action_args)?);
            "secret.rotate"
        }
        _ => return Err(refused("not an app command")),
    };
    c.provider()?;
    if matches!(workflow, "app.deploy" | "app.remove") {
        // They render the nodes' configuration as `update-node` does.
        crate::preflight::refuse_problems(c, &i).await?;
    }
    Ok(Checked {
        workflow: workflow.into(),
        input: to_json(&i, false),
        run_id,
        run_secret: None,
        confirm: None,
    })
}

/// The nodes `publish-image` loads the image on: the targets (cluster or
/// fleet nodes: any node runs podman), else every cluster node.
async fn publish_targets(
    c: &Cluster,
    target: Option<&str>,
) -> Result<Vec<(NodeName, Role)>, ClusterError> {
    if let Some(t) = target {
        return match existing(c, t, false).await {
            Ok(n) => Ok(n),
            Err(_) => existing(c, t, true).await,
        };
    }
    let all: Vec<_> = c
        .inventory()
        .await?
        .nodes
        .into_iter()
        .filter(|(_, role)| *role == Role::Cluster)
        .collect();
    if all.is_empty() {
        return Err(refused(format!("cluster {} has no cluster nodes", c.name)));
    }
    Ok(all)
}

fn rotate_args(
    c: &Cluster,
    name: &str,
    bytes: usize,
    from_action: Option<String>,
    action_args: Vec<String>,
) -> Result<RotateArgs, ClusterError> {
    let info = c
        .secrets()?
        .info(name)
        .map_err(|e| refused(e.to_string()))?;
    if info.current.is_none() {
        return Err(refused(format!(
            "no secret named {name} to rotate (store it first: `nix-infra secrets store --name {name}`)"
        )));
    }
    let mut args = RotateArgs {
        secret: name.to_string(),
        bytes: None,
        from_action: None,
    };
    match from_action {
        Some(spec) => {
            let (app, node) = spec
                .split_once('@')
                .ok_or_else(|| refused(format!("--from-action {spec}: give APP@NODE")))?;
            args.from_action = Some(FromAction {
                app: app.to_string(),
                node: node.to_string(),
                args: action_args,
            });
        }
        None => args.bytes = Some(bytes),
    }
    Ok(args)
}
