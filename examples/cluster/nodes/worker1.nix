# Node-specific configuration: uploaded as /etc/nixos/node.nix, so the apps
# it imports are at ./app_modules/<app>.
{ ... }:
{
  imports = [ ./app_modules/hello ];
}
