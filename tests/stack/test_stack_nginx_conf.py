"""compose/nginx/nginx.conf loads on the nginx the deployment images carry (`nginx -t`).

Bookworm's nginx 1.22 refuses `http2 on;` (1.25.1+): the config must load there and on newer
releases. The test runs nginx -t in the image, with the deployment's certificate and its `app`
upstream resolvable, and shows that the refused form fails the same way.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import trustme

from conformance.stack.deployment import DOMAIN, compose_dir
from conformance.stack.images import NGINX

pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("deployment_images")]


def _nginx_t(conf: Path, ssl_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["docker", "run", "--rm", "--network", "none", "--add-host", "app:127.0.0.1",
         "-v", f"{conf}:/etc/nginx/nginx.conf:ro", "-v", f"{ssl_dir}:/etc/nginx/ssl:ro",
         NGINX.name, "nginx", "-t"],
        capture_output=True, text=True, timeout=120, check=False,
    )


@pytest.fixture(scope="module")
def ssl_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("nginx-ssl")
    cert = trustme.CA().issue_cert(DOMAIN)
    cert.cert_chain_pems[0].write_to_path(str(directory / "certificate.crt"))
    cert.private_key_pem.write_to_path(str(directory / "private.key"))
    for path in (directory, *directory.iterdir()):
        path.chmod(0o755 if path.is_dir() else 0o644)
    return directory


def test_the_compose_config_loads_on_the_images_nginx(ssl_dir: Path) -> None:
    result = _nginx_t(compose_dir() / "nginx" / "nginx.conf", ssl_dir)
    assert result.returncode == 0, result.stderr
    assert "test is successful" in result.stderr


def test_the_http2_directive_of_newer_nginx_is_refused_there(ssl_dir: Path,
                                                             tmp_path: Path) -> None:
    text = (compose_dir() / "nginx" / "nginx.conf").read_text()
    newer = text.replace("listen 443 ssl http2;", "listen 443 ssl;\n        http2 on;")
    assert newer != text
    conf = tmp_path / "nginx.conf"
    conf.write_text(newer)
    conf.chmod(0o644)
    result = _nginx_t(conf, ssl_dir)
    assert result.returncode != 0
    assert 'unknown directive "http2"' in result.stderr
