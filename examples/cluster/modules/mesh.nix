# The service mesh: the flannel (WireGuard) overlay, and confd rendering
# HAProxy's configuration from the apps registered in etcd
# (/cluster/{services,backends,frontends}).
{ config, pkgs, lib, ... }:
let
  cfg = config.nix-infra.mesh;
in
{
  options.nix-infra.mesh = {
    etcdEndpoints = lib.mkOption { type = lib.types.str; description = "etcd client URLs, comma-separated"; };
    publicIp = lib.mkOption { type = lib.types.str; };
    overlayNetwork = lib.mkOption { type = lib.types.str; };
    overlayIp = lib.mkOption { type = lib.types.str; };
    certsDir = lib.mkOption { type = lib.types.str; default = "/root/certs"; };
    serviceGroups = lib.mkOption { type = lib.types.listOf lib.types.str; default = [ ]; };
  };

  config = {
    services.flannel = {
      enable = true;
      network = cfg.overlayNetwork;
      publicIp = cfg.publicIp;
      backend = { Type = "wireguard"; };
      etcd = {
        endpoints = lib.splitString "," cfg.etcdEndpoints;
        caFile = "${cfg.certsDir}/ca.pem";
        certFile = "${cfg.certsDir}/client.pem";
        keyFile = "${cfg.certsDir}/client-key.pem";
      };
    };
    services.confd = {
      enable = true;
      backend = "etcdv3";
      nodes = lib.splitString "," cfg.etcdEndpoints;
      watch = true;
      prefix = "/cluster";
    };
    services.haproxy.enable = true;
    networking.hosts.${cfg.overlayIp} = [ "${config.networking.hostName}.overlay" ];
  };
}
