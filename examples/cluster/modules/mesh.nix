# The service mesh: confd renders HAProxy's configuration from the apps
# registered in etcd (/cluster/{services,backends,frontends}).
{ config, pkgs, lib, ... }:
let
  cfg = config.nix-infra.mesh;
in
{
  options.nix-infra.mesh = {
    etcdEndpoints = lib.mkOption { type = lib.types.str; };
    overlayIp = lib.mkOption { type = lib.types.str; };
    serviceGroups = lib.mkOption { type = lib.types.listOf lib.types.str; default = [ ]; };
  };

  config = {
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
