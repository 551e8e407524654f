"""Static checks of deployment artifacts: .env, compose file, Dockerfile, nginx, Prometheus, sizing."""
