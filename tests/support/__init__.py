"""What the tests share and are not tests themselves: the test jobs and Apps, helpers to
start and watch child processes (workers, servers, racers), the modules those children
run (``python -m tests.support.run_job``, ``--app tests.support.worker_app:app``, ...),
the databases each test gets, and the private PostgreSQL cluster of the tests that stop
or restart the server. The subpackages mirror the test folders (``faults``, ``http``,
``dashboard``, ``queue``)."""
