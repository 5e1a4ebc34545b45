"""`pixelwise serve`: a trained or exported model over HTTP, with a web page (needs the [serve] extra).

`app.create_app(model, settings)` builds the FastAPI application; `engines.load_for_serving`
loads a .pt or .onnx model on torch or ONNX Runtime. This package imports nothing itself, so
that `pixelwise` runs without the extra.
"""
