//! The example cluster repo (`examples/cluster/` in the source tree), built in
//! so `nix-infra init --example` and `nix-infra demo` work from the binary alone.

use std::path::Path;

macro_rules! files {
    ($($path:literal),* $(,)?) => {
        [$(($path, include_str!(concat!("../../examples/cluster/", $path)))),*]
    };
}

/// (path, contents) of every file of the example repo.
pub const FILES: [(&str, &str); 11] = files![
    "env.example",
    "node_types/control_node.nix",
    "node_types/cluster_node.nix",
    "node_types/ingress_node.nix",
    "node_types/fleet_node.nix",
    "modules/base.nix",
    "modules/mesh.nix",
    "nodes/worker1.nix",
    "app_modules/hello/default.nix",
    "app_modules/hello/action.sh",
    "README.md",
];

/// Writes every example file missing under `dir`; returns (written, kept).
pub fn write(dir: &Path) -> std::io::Result<(Vec<&'static str>, Vec<&'static str>)> {
    use std::os::unix::fs::PermissionsExt;
    let (mut made, mut kept) = (Vec::new(), Vec::new());
    for (path, text) in FILES {
        let dst = dir.join(path);
        if dst.exists() {
            kept.push(path);
            continue;
        }
        if let Some(parent) = dst.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&dst, text)?;
        if path.ends_with(".sh") {
            std::fs::set_permissions(&dst, std::fs::Permissions::from_mode(0o755))?;
        }
        made.push(path);
    }
    Ok((made, kept))
}
