"""One ``APIRouter`` per resource: search, images, indexing jobs, the service's own endpoints, and
the web page. ``pixseek.api.app.create_app`` includes them; a new route goes in its resource's
module, a new resource in a module of its own.
"""
