"""Modules only gunicorn loads (named in gunicorn.conf.py): its worker class and access log."""
