# A cluster node: apps in podman behind HAProxy, which confd configures from
# etcd, on the flannel (WireGuard) overlay. Its overlay address is reserved
# before the first deploy, so it is right here the first time.
{ config, pkgs, lib, ... }:
{
  imports = [ ./modules/base.nix ./modules/mesh.nix ];

  nix-infra.mesh = {
    etcdEndpoints = "[%%etcdEndpoints%%]";
    publicIp = "[%%localIp%%]";
    overlayNetwork = "[%%overlayNetwork%%]";
    overlayIp = "[%%overlayIp%%]";
    certsDir = "[%%certsDir%%]";
    serviceGroups = lib.splitString "," "[%%serviceGroups%%]";
  };

  virtualisation.podman.enable = true;
}
