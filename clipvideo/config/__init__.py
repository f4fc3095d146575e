"""The three YAML files: params.yaml (what changes a result), settings.yaml (how work is done) and
variants.yaml (the classifiers). Pydantic schemas, safe loading, one-line errors, and the view that lets a
stage read only the params it declares."""
