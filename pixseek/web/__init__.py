"""The web page (plain HTML, CSS and JavaScript in ``static/``), served by the API at ``/``."""
