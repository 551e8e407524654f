"""Static checks of deployment artifacts: .env, compose, Dockerfile, nginx, Prometheus, sizing."""
