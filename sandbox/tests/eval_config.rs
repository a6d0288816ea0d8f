//! The sandbox's stand-in for NixOS's module system (`nixos-eval-config.nix`,
//! which its `nixos-rebuild` uses to find etcd's settings), run with the
//! real `nix-instantiate` on module trees written the way NixOS repos write
//! them.

use std::path::Path;
use std::process::Command;

const EVAL: &str = include_str!("../src/standins/nixos-eval-config.nix");

/// Writes `files` under a temp directory and evaluates its configuration.nix.
fn etcd_args(files: &[(&str, &str)]) -> Result<String, String> {
    let d = tempfile::tempdir().unwrap();
    for (name, text) in files {
        let path = d.path().join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    let eval = d.path().join("nixos-eval-config.nix");
    std::fs::write(&eval, EVAL).unwrap();
    let expr = format!(
        "import {} {{ configuration = {}; }}",
        eval.display(),
        d.path().join("configuration.nix").display()
    );
    run(&expr, d.path())
}

fn run(expr: &str, dir: &Path) -> Result<String, String> {
    let out = Command::new("nix-instantiate")
        .args(["--eval", "--strict", "-E", expr])
        .env("NIX_CONFIG", "build-users-group =")
        .current_dir(dir)
        .output()
        .expect("nix-instantiate (scripts/setup.sh installs it)");
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let text = String::from_utf8(out.stdout).unwrap();
    Ok(text.trim().trim_matches('"').to_string())
}

const NETWORKING: &str = r#"{ lib, ... }: {
  networking.usePredictableInterfaceNames = lib.mkForce false;
  networking.interfaces.eth0.ipv4.addresses = [ { address = "127.9.0.7"; prefixLength = 32; } ];
}"#;

const HARDWARE: &str = r#"{ modulesPath, ... }: {
  imports = [ (modulesPath + "/profiles/qemu-guest.nix") ];
  fileSystems."/" = { device = "/dev/sda1"; fsType = "ext4"; };
}"#;

/// An etcd module in the usual shape: options with defaults, `mkIf` on its
/// own option, values read from other modules' definitions.
const ETCD_MODULE: &str = r#"{ config, lib, pkgs, ... }:
let
  cfg = config.local.etcd;
  ip = (builtins.head config.networking.interfaces.eth0.ipv4.addresses).address;
in {
  options.local.etcd = {
    enable = lib.mkEnableOption "etcd";
    token = lib.mkOption { type = lib.types.str; default = "from-the-default"; };
    peers = lib.mkOption { type = lib.types.listOf lib.types.str; default = [ ]; };
  };
  config = lib.mkIf cfg.enable (lib.mkMerge [
    {
      services.etcd.enable = true;
      services.etcd.name = config.networking.hostName;
      services.etcd.initialClusterToken = cfg.token;
      services.etcd.listenClientUrls = [ "https://0.0.0.0:2379" "https://127.0.0.1:4001" ];
      services.etcd.advertiseClientUrls = [ "https://${ip}:2379" ];
      services.etcd.trustedCaFile = /root/certs/ca.pem;
      environment.systemPackages = [ pkgs.etcd ];
    }
    { services.etcd.initialCluster = map (p: "${p}=https://${ip}:2380") cfg.peers; }
    { services.etcd.initialClusterState = lib.mkDefault "new"; }
  ]);
}"#;

#[test]
fn a_module_tree_gives_etcd_what_the_module_system_would() {
    let conf = r#"{ lib, ... }:
let maybe = p: lib.fileset.toList (lib.fileset.maybeMissing p);
in {
  imports = [ ./hardware-configuration.nix ./networking.nix ./modules ]
    ++ maybe ./control_node.nix ++ maybe ./absent_node.nix;
  networking.hostName = "ctrl9";
}"#;
    let control = r#"{
  local.etcd.enable = true;
  local.etcd.peers = [ "ctrl9" ];
  services.etcd.initialClusterState = lib.mkForce "existing";
}"#;
    // The control node file takes `lib` too (as modules do), so it is a function.
    let control = format!("{{ lib, ... }}: {control}");
    let args = etcd_args(&[
        ("configuration.nix", conf),
        ("hardware-configuration.nix", HARDWARE),
        ("networking.nix", NETWORKING),
        ("modules/default.nix", "{ imports = [ ./etcd.nix ]; }"),
        ("modules/etcd.nix", ETCD_MODULE),
        ("control_node.nix", &control),
    ])
    .unwrap();
    assert_eq!(
        args,
        "--name ctrl9 --data-dir /var/lib/etcd \
         --listen-client-urls https://127.9.0.7:2379,https://127.9.0.7:4001 \
         --advertise-client-urls https://127.9.0.7:2379 \
         --initial-cluster ctrl9=https://127.9.0.7:2380 --initial-cluster-state existing \
         --initial-cluster-token from-the-default \
         --trusted-ca-file /root/certs/ca.pem --peer-trusted-ca-file /root/certs/ca.pem"
    );
}

#[test]
fn etcd_stays_off_where_no_module_turns_it_on() {
    let conf = r#"{ ... }: {
  imports = [ ./hardware-configuration.nix ./networking.nix ./modules/etcd.nix ];
  networking.hostName = "worker9";
}"#;
    let args = etcd_args(&[
        ("configuration.nix", conf),
        ("hardware-configuration.nix", HARDWARE),
        ("networking.nix", NETWORKING),
        ("modules/etcd.nix", ETCD_MODULE),
    ])
    .unwrap();
    assert_eq!(args, "");
}

#[test]
fn what_the_stand_in_cannot_follow_is_an_error_naming_it() {
    let conf = r#"{ lib, ... }: {
  imports = [ ./networking.nix ];
  networking.hostName = lib.someFunctionOfNixpkgs "x";
  services.etcd.enable = true;
  services.etcd.name = lib.someFunctionOfNixpkgs "x";
}"#;
    let err =
        etcd_args(&[("configuration.nix", conf), ("networking.nix", NETWORKING)]).unwrap_err();
    assert!(err.contains("someFunctionOfNixpkgs"), "{err}");
}
