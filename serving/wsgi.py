"""gunicorn entry point: ``gunicorn -c conf/gunicorn.conf.py serving.wsgi:app``."""

from serving.app import create_app

app = create_app()
