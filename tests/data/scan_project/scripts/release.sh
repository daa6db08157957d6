#!/bin/sh
set -e
rm -rf dist
pypissh setup.py sdist upload
python -m pypissh register
echo "Now run twine upload dist/* for the wheel"
twine upload dist/*
