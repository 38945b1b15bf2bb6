"""poseapp command line: ``python infer.py --source photo.jpg`` (see ``python infer.py --help``)."""
from poseapp.cli import main

if __name__ == "__main__":
    main()
