# ctrl1's own settings (uploaded as /etc/nixos/ctrl1.nix). modules/etcd.nix
# makes etcd's settings from the control node type's options, as NixOS
# modules do; this file only says where etcd keeps its data, and leaves a
# note of who the node is.
{ config, pkgs, lib, ... }:
{
  services.etcd.dataDir = "/var/lib/etcd";
  environment.etc."nix-infra/whoami".text =
    "[%%localhost.hostname%%] [%%localhost.ipv4%%] ctrl1 is [%%ctrl1.ipv4%%]";
}
