# An ingress node (uploaded as /etc/nixos/cluster_node.nix, as the Dart tool
# names every non-control node type): a worker that also faces the internet.
{ config, pkgs, lib, ... }:
let
  members = [ [%%etcdCluster%%] ];
in
{
  infrastructure.etcdEndpoints = map (m: "https://${m.ip}:2379") members;
  infrastructure.flannel.enable = true;
  infrastructure.confd.enable = true;
  networking.firewall.allowedTCPPorts = [ 80 443 ];
}
