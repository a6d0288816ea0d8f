# worker1 runs the hello app, named through its options (not a path), and
# reads its greeting from a secret.
{ config, pkgs, lib, ... }:
{
  apps.hello = {
    enable = true;
    greetingFile = "/root/secrets/[%%secrets/hello-greeting%%]";
    bindToIp = "[%%localhost.overlayIp%%]";
    peer = "[%%worker2.overlayIp%%]";
  };
  nix.settings.trusted-public-keys = [%%nix-store.trusted-public-keys%%];
  networking.extraHosts = ''
    [%%ctrl1.ipv4%%] ctrl1
    [%%localhost.ipv4%%] [%%localhost.hostname%%]
  '';
}
