"""gunicorn entry point: ``gunicorn -c conf/gunicorn.conf.py serving.wsgi:app``.

Logging first (var/logs/serving.log and stderr, serving/logs.py), then the app.
"""

from blink import config
from serving import logs
from serving.app import create_app

_cfg = config.load()
logs.setup(_cfg)
app = create_app(_cfg)
