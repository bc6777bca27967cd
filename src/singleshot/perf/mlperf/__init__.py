"""MLPerf Inference's SSD-ResNet34 under LoadGen: settings (``conf``), the QSL and SUT (``sut``),
one run and the compliance verdicts (``harness``), the accuracy log's scoring (``accuracy``), and
scenarios x modes with the submission tree (``suite``)."""
