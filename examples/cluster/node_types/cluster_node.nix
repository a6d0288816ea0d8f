# A cluster node: apps in podman behind HAProxy, which confd configures from
# etcd, on the flannel (WireGuard) overlay. Its overlay address is reserved
# before the first deploy, so it is right here the first time.
{ config, pkgs, lib, ... }:
let
  etcdEndpoints = "[%%etcdEndpoints%%]";
in
{
  imports = [ ./modules/base.nix ./modules/mesh.nix ];

  services.flannel = {
    enable = true;
    network = "[%%overlayNetwork%%]";
    publicIp = "[%%localIp%%]";
    backend = { Type = "wireguard"; };
    etcd = {
      endpoints = lib.splitString "," etcdEndpoints;
      caFile = "[%%certsDir%%]/ca.pem";
      certFile = "[%%certsDir%%]/client.pem";
      keyFile = "[%%certsDir%%]/client-key.pem";
    };
  };

  nix-infra.mesh = {
    etcdEndpoints = etcdEndpoints;
    overlayIp = "[%%overlayIp%%]";
    serviceGroups = lib.splitString "," "[%%serviceGroups%%]";
  };

  virtualisation.podman.enable = true;
}
