# The hello app's actions, run by `nix-infra cluster action --app-module hello`.
# Not executable on purpose: nix-infra runs it with bash, as the Dart tool does.
verb="${1:-}"
shift || true
case "$verb" in
  # The target host, its dots as dashes (a name fit for a DNS label).
  greet) echo "hello action on $(hostname) for ${GREETING_TARGET//./-}: $*" ;;
  *) echo "unknown action: $verb" >&2; exit 2 ;;
esac
