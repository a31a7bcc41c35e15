"""``python -m pipeline predict SOURCE``: an exported pose model on one's own photos and video.

:mod:`pipeline.predict.model` finds and opens the artifact (also for the real-photo check of
benchmarks/real_faces.py), :mod:`pipeline.predict.media` reads the
inputs and writes annotated images and video (no exporter imports: the lowest layer, so benchmarks can
make test video with it), :mod:`pipeline.predict.run` is the loop and the tables.
"""
