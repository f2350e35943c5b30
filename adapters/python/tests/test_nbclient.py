"""nbclient executes a notebook through the provisioner (its manager has no connection-file
path when the provisioner starts: the provisioner chooses one in the runtime dir)."""

import nbformat
from nbclient import NotebookClient

from jupyter_handshake.provisioner import HandshakeProvisioner


async def test_nbclient_executes_a_notebook(runtime_dir):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("x = 6 * 7"), nbformat.v4.new_code_cell("print(x)")]
    client = NotebookClient(nb, kernel_name="hs-ipykernel", timeout=60)
    seen = []

    async def on_start(notebook):
        seen.append(type(client.km.provisioner))
        seen.append(str(runtime_dir) in client.km.connection_file)

    client.on_notebook_start = on_start
    await client.async_execute()
    assert nb.cells[1].outputs[0]["text"] == "42\n"
    assert seen == [HandshakeProvisioner, True]
