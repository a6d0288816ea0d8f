# The root of every node's configuration, in the Dart nix-infra's layout:
# nix-infra uploads it as /etc/nixos/configuration.nix with [%%sshKey%%],
# [%%nodeName%%] and [%%nixVersion%%] filled, next to what nixos-infect left
# (hardware-configuration.nix, networking.nix) and the node's own files.
{ config, pkgs, lib, ... }:
let
  # Only the node type and node file this node was given exist on it.
  present = builtins.filter builtins.pathExists [
    ./cluster_node.nix
    ./control_node.nix
    ./[%%nodeName%%].nix
    ./modules/default.nix
    ./app_modules/default.nix
  ];
in
{
  imports = [ ./hardware-configuration.nix ./networking.nix ] ++ present;

  networking.hostName = "[%%nodeName%%]";
  system.stateVersion = "[%%nixVersion%%]";

  services.openssh.enable = true;
  users.users.root.openssh.authorizedKeys.keys = [ "[%%sshKey%%]" ];
  networking.firewall.allowedTCPPorts = [ 22 ];

  nix.settings.experimental-features = [ "nix-command" "flakes" ];
  environment.systemPackages = with pkgs; [ git jq ];
}
