"""Response shapes written once per resource, for the routes (and the CLI's JSON) that
answer them."""
