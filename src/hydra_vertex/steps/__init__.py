"""What the pipeline's components do. The components in ``components/`` are thin kfp
declarations that call these functions, so the same code runs on Vertex, under ``kfp.local`` and
in tests: build -> tune -> best trial -> retrain.
"""
