"""Serve the `rarl/train` deployment from this process: `python -m flows.serve`, then
`prefect deployment run rarl/train` from another shell. (prefect.yaml declares the same deployment for a work pool.)"""

from flows.pipeline import train

if __name__ == "__main__":
    train.serve(name="train")
