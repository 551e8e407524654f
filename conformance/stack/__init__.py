"""Stack providers: stand a TaskForge target up (docker, embedded) or wrap one (external)."""
