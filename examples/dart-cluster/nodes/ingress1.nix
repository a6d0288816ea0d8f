# ingress1 balances the workers over the overlay.
{ config, pkgs, lib, ... }:
{
  services.haproxy.enable = true;
  services.haproxy.config = ''
    frontend web
      bind [%%localhost.ipv4%%]:80
      default_backend hello
    backend hello
      server worker1 [%%worker1.overlayIp%%]:8080
      server worker2 [%%worker2.overlayIp%%]:8080
  '';
}
