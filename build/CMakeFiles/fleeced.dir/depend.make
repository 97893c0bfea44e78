# Empty dependencies file for fleeced.
# This may be replaced when dependencies are built.
