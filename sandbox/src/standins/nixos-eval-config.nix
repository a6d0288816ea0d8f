# nix-infra test node: stands in for the part of NixOS's module system that
# nixos-rebuild needs here: which etcd the configuration asks systemd to run.
#
# There is no nixpkgs on a sandbox node, so this evaluates the configuration
# the way the module system does, with a small `lib` of its own: imports are
# followed (lib.fileset.maybeMissing included), modules may be functions of
# { config, lib, pkgs, options, modulesPath, ... }, `options` declare
# defaults (mkOption, mkEnableOption), and definitions merge with mkIf,
# mkMerge, mkDefault, mkForce and mkOverride, lists concatenated. `config` is
# a fixpoint, as in NixOS: a module may read what others define. Types are
# not checked, and `pkgs` holds nothing: a value that needs a package is
# never forced, since only `services.etcd` is read.
#
#   nix-instantiate --eval --strict -E 'import ./nixos-eval-config.nix { configuration = /etc/nixos/configuration.nix; }'
#   nix-instantiate --eval --strict -E 'import ./nixos-eval-config.nix { file = /etc/nixos/etcd.nix; }'
#
# Either gives etcd's command line ("" when etcd is not enabled). `file`
# reads one module called with empty arguments, whose etcd options must then
# be literals (the sandbox's older, per-file reading).
{ configuration ? null, file ? null }:
let
  inherit (builtins) attrNames concatMap concatStringsSep elem filter foldl' functionArgs
    head isAttrs isFunction isList isPath isString length listToAttrs mapAttrs;

  unique = foldl' (acc: x: if elem x acc then acc else acc ++ [ x ]) [ ];

  lib = rec {
    mkIf = condition: content: { _type = "if"; inherit condition content; };
    mkMerge = contents: { _type = "merge"; inherit contents; };
    mkOverride = priority: content: { _type = "override"; inherit priority content; };
    mkOptionDefault = mkOverride 1500;
    mkDefault = mkOverride 1000;
    mkForce = mkOverride 50;
    mkVMOverride = mkOverride 10;
    mkOrder = _: content: content;
    mkBefore = content: content;
    mkAfter = content: content;
    mkOption = attrs: attrs // { _type = "option"; };
    mkEnableOption = name: mkOption { default = false; description = "Whether to enable ${name}."; };
    mkPackageOption = _: name: extra: mkOption ({ description = "The ${toString name} package."; } // extra);
    literalExpression = text: { _type = "literalExpression"; inherit text; };
    literalMD = text: { _type = "literalMD"; inherit text; };
    mdDoc = text: text;
    types = let t = name: { inherit name; }; f = name: _: t name; in {
      str = t "str"; lines = t "lines"; bool = t "bool"; int = t "int"; port = t "port";
      path = t "path"; package = t "package"; attrs = t "attrs"; anything = t "anything";
      raw = t "raw"; unspecified = t "unspecified"; float = t "float"; number = t "number";
      nonEmptyStr = t "nonEmptyStr"; singleLineStr = t "singleLineStr"; commas = t "commas";
      separatedString = f "separatedString"; positiveInt = t "positiveInt";
      unsignedInt = t "unsignedInt"; ints = { positive = t "positive"; unsigned = t "unsigned"; u16 = t "u16"; between = _: f "between"; };
      listOf = f "listOf"; attrsOf = f "attrsOf"; lazyAttrsOf = f "lazyAttrsOf"; nullOr = f "nullOr";
      uniq = f "uniq"; enum = f "enum"; submodule = f "submodule"; oneOf = f "oneOf";
      either = _: f "either"; coercedTo = _: _: f "coercedTo"; functionTo = f "functionTo";
    };
    fileset = {
      maybeMissing = p: if builtins.pathExists p then [ p ] else [ ];
      toList = x: if isList x then x else [ x ];
    };
    optional = c: x: if c then [ x ] else [ ];
    optionals = c: xs: if c then xs else [ ];
    optionalString = c: s: if c then s else "";
    optionalAttrs = c: a: if c then a else { };
    concatStrings = concatStringsSep "";
    inherit concatStringsSep concatMap elem filter foldl' head length mapAttrs unique;
    concatMapStrings = g: xs: concatStrings (map g xs);
    concatMapStringsSep = sep: g: xs: concatStringsSep sep (map g xs);
    mapAttrsToList = g: a: map (n: g n a.${n}) (attrNames a);
    mapAttrs' = g: a: listToAttrs (map (n: g n a.${n}) (attrNames a));
    nameValuePair = name: value: { inherit name value; };
    filterAttrs = p: a: listToAttrs (concatMap (n: if p n a.${n} then [ { name = n; value = a.${n}; } ] else [ ]) (attrNames a));
    attrByPath = path: default: a:
      if path == [ ] then a else if a ? ${head path} then attrByPath (builtins.tail path) default a.${head path} else default;
    recursiveUpdate = a: b: a // mapAttrs (n: v: if isAttrs v && isAttrs (a.${n} or null) then recursiveUpdate a.${n} v else v) b;
    flatten = x: if isList x then concatMap flatten x else [ x ];
    last = xs: builtins.elemAt xs (length xs - 1);
    hasPrefix = p: s: builtins.substring 0 (builtins.stringLength p) s == p;
    hasSuffix = p: s: let l = builtins.stringLength s; pl = builtins.stringLength p; in l >= pl && builtins.substring (l - pl) pl s == p;
    splitString = sep: s: filter isString (builtins.split (escapeRegex sep) s);
    escapeRegex = s: builtins.replaceStrings [ "." "*" "+" "?" "(" ")" "[" "]" "{" "}" "|" "^" "$" "\\" ] [ "\\." "\\*" "\\+" "\\?" "\\(" "\\)" "\\[" "\\]" "\\{" "\\}" "\\|" "\\^" "\\$" "\\\\" ] s;
    escapeShellArg = s: "'${builtins.replaceStrings [ "'" ] [ "'\\''" ] (toString s)}'";
    toLower = s: builtins.replaceStrings upper lower s;
    upper = [ "A" "B" "C" "D" "E" "F" "G" "H" "I" "J" "K" "L" "M" "N" "O" "P" "Q" "R" "S" "T" "U" "V" "W" "X" "Y" "Z" ];
    lower = [ "a" "b" "c" "d" "e" "f" "g" "h" "i" "j" "k" "l" "m" "n" "o" "p" "q" "r" "s" "t" "u" "v" "w" "x" "y" "z" ];
    attrsets = { inherit mapAttrsToList mapAttrs' filterAttrs nameValuePair attrByPath recursiveUpdate; };
    strings = { inherit concatStrings concatMapStrings concatMapStringsSep concatStringsSep hasPrefix hasSuffix splitString optionalString escapeShellArg toLower; };
    lists = { inherit optional optionals flatten last unique; };
  };

  # A definition becomes a list of { cond, prio, value }: mkIf, mkMerge and
  # mkOverride are taken apart without forcing any condition yet.
  norm = cond: prio: d:
    if isAttrs d && d ? _type then
      if d._type == "if" then norm (cond && d.condition) prio d.content
      else if d._type == "merge" then concatMap (norm cond prio) d.contents
      else if d._type == "override" then norm cond d.priority d.content
      else [ { inherit cond prio; value = d; } ]
    else [ { inherit cond prio; value = d; } ];

  plain = v: isAttrs v && !(v ? _type) && (v.type or null) != "derivation";

  # Attribute sets merge attribute by attribute (their names never depend on
  # a condition, so a module may read `config` in one); anything else is a
  # leaf: the active definitions of the highest priority win, lists
  # concatenate, and a leaf nobody defines (all conditions false) is null.
  merge = defs:
    if defs != [ ] && length (filter (x: plain x.value) defs) == length defs then
      let names = unique (concatMap (x: attrNames x.value) defs);
      in listToAttrs (map (n: {
        name = n;
        value = merge (concatMap (x: if x.value ? ${n} then norm x.cond x.prio x.value.${n} else [ ]) defs);
      }) names)
    else
      let
        active = filter (x: x.cond) defs;
        best = foldl' (m: x: if x.prio < m then x.prio else m) 100000 active;
        top = filter (x: x.prio == best) active;
      in
      if top == [ ] then null
      else if isList (head top).value then concatMap (x: x.value) top
      else if plain (head top).value then merge top
      else (head top).value;

  modulesPath = "/run/current-system/sw/modules";
  args = { inherit config lib options modulesPath; pkgs = { inherit lib; }; };

  # NixOS's own modules (hardware-configuration.nix imports the qemu-guest
  # profile) are not on a sandbox node: they count as empty.
  ownModule = m: lib.hasPrefix modulesPath (toString m) && !builtins.pathExists m;

  load = m:
    let
      v = if ownModule m then { } else if isPath m || isString m then import m else m;
      wanted = functionArgs v;
    in
    if isFunction v then v (if wanted == { } then args else builtins.intersectAttrs wanted args) else v;

  collect = m: let v = load m; in [ v ] ++ concatMap collect (v.imports or [ ]);

  modules = collect configuration;

  defsOf = v:
    if v ? config || v ? options then v.config or { }
    else removeAttrs v [ "imports" "_file" "key" "disabledModules" "meta" ];

  # Declared options give their defaults, at mkOptionDefault's priority.
  defaults = o:
    if isAttrs o && (o._type or null) == "option" then
      (if o ? default then lib.mkOptionDefault o.default else lib.mkMerge [ ])
    else if isAttrs o then mapAttrs (_: defaults) o
    else lib.mkMerge [ ];

  options = merge (concatMap (v: norm true 100 (v.options or { })) modules);

  config = merge (concatMap (v: norm true 100 (defsOf v) ++ norm true 1500 (defaults (v.options or { }))) modules);

  # Sandbox nodes share the host's network namespace, each on its own
  # loopback address: an etcd URL on every interface (0.0.0.0) or on the
  # node's loopback means that address here, as it means the node's own
  # interfaces on a server.
  ownAddress = urls: if self == null then urls else map (u: builtins.replaceStrings [ "//0.0.0.0:" "//127.0.0.1:" "//localhost:" ] [ "//${self}:" "//${self}:" "//${self}:" ] u) urls;
  self = let a = ((((config.networking or { }).interfaces or { }).eth0 or { }).ipv4 or { }).addresses or null;
    in if configuration != null && isList a && a != [ ] then (head a).address else null;

  hostName = if configuration != null then ((config.networking or { }).hostName or null) else null;

  etcdArgs = e:
    let
      get = name: if e ? ${name} then e.${name} else null;
      opt = flag: name: if get name != null then [ flag (toString (get name)) ] else [ ];
      list = flag: name: if get name != null then [ flag (concatStringsSep "," (ownAddress (map toString (get name)))) ] else [ ];
      bool = flag: name: if get name == true then [ flag ] else [ ];
    in
    if get "enable" == true then concatStringsSep " " (
      # As NixOS's etcd module: the member's name defaults to the host's.
      (if get "name" != null then opt "--name" "name" else if hostName != null then [ "--name" hostName ] else [ ]) ++ [ "--data-dir" (if get "dataDir" != null then toString e.dataDir else "/var/lib/etcd") ]
      ++ list "--listen-client-urls" "listenClientUrls" ++ list "--advertise-client-urls" "advertiseClientUrls"
      ++ list "--listen-peer-urls" "listenPeerUrls" ++ list "--initial-advertise-peer-urls" "initialAdvertisePeerUrls"
      ++ list "--initial-cluster" "initialCluster" ++ opt "--initial-cluster-state" "initialClusterState"
      ++ opt "--initial-cluster-token" "initialClusterToken"
      ++ bool "--client-cert-auth" "clientCertAuth" ++ bool "--peer-client-cert-auth" "peerClientCertAuth"
      ++ opt "--trusted-ca-file" "trustedCaFile" ++ opt "--cert-file" "certFile" ++ opt "--key-file" "keyFile"
      # As NixOS's etcd module: the peer CA defaults to the client one.
      ++ (if get "peerTrustedCaFile" != null then opt "--peer-trusted-ca-file" "peerTrustedCaFile" else opt "--peer-trusted-ca-file" "trustedCaFile")
      ++ opt "--peer-cert-file" "peerCertFile" ++ opt "--peer-key-file" "peerKeyFile")
    else "";

  etcdOf = c: let s = if isAttrs c then c.services or null else null; in if isAttrs s && isAttrs (s.etcd or null) then s.etcd else { };

  literal =
    let m = import file; v = if isFunction m then m { config = { }; pkgs = { }; lib = { }; } else m;
    in etcdOf v;
in
etcdArgs (if configuration != null then etcdOf config else literal)
