# Uploaded as /etc/nixos/flake.nix with [%%nixVersion%%], [%%nodeName%%] and
# [%%hwArch%%] filled; `nixos-rebuild switch` builds this node's entry.
{
  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-[%%nixVersion%%]";

  outputs = { self, nixpkgs }: {
    nixosConfigurations."[%%nodeName%%]" = nixpkgs.lib.nixosSystem {
      system = "[%%hwArch%%]";
      modules = [ ./configuration.nix ];
    };
  };
}
