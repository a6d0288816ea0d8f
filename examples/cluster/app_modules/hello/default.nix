# An app: a container on the node, its greeting from a cluster secret.
# The secret reaches the node encrypted with systemd-creds, at
# /root/secrets/hello-greeting, and only the unit can read it.
{ config, pkgs, lib, ... }:
{
  virtualisation.oci-containers.containers.hello = {
    image = "docker.io/hashicorp/http-echo:1.0";
    cmd = [ "-listen=:5678" "-text-file=/run/credentials/podman-hello.service/greeting" ];
    ports = [ "5678:5678" ];
  };
  systemd.services.podman-hello.serviceConfig.LoadCredentialEncrypted = [
    "greeting:/root/secrets/hello-greeting"
  ];
}
