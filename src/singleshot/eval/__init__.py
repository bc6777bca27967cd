"""COCO evaluation: annotation files, pycocotools scoring, resumable detection runs and side-by-side reports."""
