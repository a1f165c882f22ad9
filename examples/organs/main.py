"""Train the organs example, the seed's way: `python main.py` in this folder."""

from pathlib import Path

from frame import Runner

# Add all the jobs, that you want to run, here
jobs = ["config/job_01.json"]

# Main guard: the Runner starts a process per job
if __name__ == "__main__":
    if not Path("data/train").is_dir():  # the synthetic NIfTI data set, written once (about 20 s)
        import make_data

        make_data.main(["--out", "data/train"])

    # Create a runner instance and pass it the jobs
    worker = Runner(jobs=jobs)

    # Start working on the jobs until all are finished
    worker.run()
