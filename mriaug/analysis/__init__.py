"""What the study's results say: the thesis tables (`collect`) and the pool reports (`pool_report`).

Statistics, Grad-CAM and the study report join this package; nothing below it imports it.
"""
