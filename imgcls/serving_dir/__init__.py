"""The serving directory: integer version directories under a model base path,
written by the Pusher (and rollback) and watched by TF Serving.

Between the pipeline's last step and the server: it depends only on the
contract, and the components, the clients and the development server read
and write versions through it.
"""
