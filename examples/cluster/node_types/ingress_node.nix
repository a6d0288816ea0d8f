# An ingress node: HAProxy on 80/443 in front of the frontends registered in
# etcd, reached over the overlay.
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

  networking.firewall.allowedTCPPorts = [ 80 443 ];
}
