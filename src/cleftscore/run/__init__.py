"""The run: photos in, one typed record per photo, and the run folder that holds them.

- :mod:`~cleftscore.run.settings`: :class:`PipelineSettings` and :class:`ProgressHooks`;
- :mod:`~cleftscore.run.inputs`: the photos of a run and their unique ids;
- :mod:`~cleftscore.run.record`: the photo record (typed, frozen, versioned; its JSON form);
- :mod:`~cleftscore.run.folder`: the run-folder layout, its lock, reading and writing, the CSV;
- :mod:`~cleftscore.run.photo` and :mod:`~cleftscore.run.outputs`: one photo through the stages,
  and its pictures and folder;
- :mod:`~cleftscore.run.pipeline`: :func:`score_photos`, the streaming pipeline;
- :mod:`~cleftscore.run.parallel`: photos of the weights-free method in several processes;
- :mod:`~cleftscore.run.rescore`: :func:`rescore_run`;
- :mod:`~cleftscore.run.lpips`: spatial LPIPS as a function for ``metric="lpips"`` heat maps.
"""
