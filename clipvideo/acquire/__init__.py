"""Getting the videos: the manifest (links, the Kaggle CSV, the synthetic sample), yt-dlp in killable worker
processes behind the private-network guard, and the download step that resumes."""
