# A worker (uploaded as /etc/nixos/cluster_node.nix): flannel joins the
# overlay, confd renders HAProxy from the registry on the control nodes.
{ config, pkgs, lib, ... }:
let
  members = [ [%%etcdCluster%%] ];
in
{
  infrastructure.etcdEndpoints = map (m: "https://${m.ip}:2379") members;
  infrastructure.flannel.enable = true;
  infrastructure.confd.enable = true;
}
