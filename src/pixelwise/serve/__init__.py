"""`pixelwise serve`: a trained or exported model over HTTP, with a web page (needs the [serve] extra)."""

from pixelwise.serve.app import ServeSettings, create_app
from pixelwise.serve.engines import ENGINES, load_for_serving

__all__ = ["ENGINES", "ServeSettings", "create_app", "load_for_serving"]
