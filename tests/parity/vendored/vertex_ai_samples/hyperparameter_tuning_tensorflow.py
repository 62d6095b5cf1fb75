# Copyright 2022 Google LLC
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     https://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.

# The Python cells of Google's notebook "Run hyperparameter tuning for a TensorFlow model"
# (GoogleCloudPlatform/vertex-ai-samples, notebooks/official/training/
# hyperparameter_tuning_tensorflow.ipynb; see ../../VENDORED.md), in order, each under its cell
# id and copied as it is. Left out: the shell cells (pip, gcloud, mkdir, cd), the Colab cells,
# and the %%writefile cells: the Dockerfile cell is ../../images/hptune/Dockerfile, and the
# trainer cell (TensorFlow) is the parity image's trainer (the image is what changes).
# hydra-vertex: the only edit is PROJECT_ID, the placeholder a reader fills in.

from parity_endpoint import NOTEBOOK  # hydra-vertex: the values a reader fills in

# cell 496fcb0092a7 (without its gcloud line)
PROJECT_ID = NOTEBOOK[
    "PROJECT_ID"
]  # hydra-vertex: was "[your-project-id]"  # @param {type:"string"}

LOCATION = "us-central1"  # @param {type: "string"}

# cell 1105933b5528
import random
import string


# Generate a uuid of a specifed length(default=8)
def generate_uuid(length: int = 8) -> str:
    return "".join(random.choices(string.ascii_lowercase + string.digits, k=length))


UUID = generate_uuid()

# cell MzGDU7TWdts_
BUCKET_URI = f"gs://your-bucket-name-{PROJECT_ID}-unique"  # @param {type:"string"}

# cell 378ffacc0348
import google.cloud.aiplatform as aiplatform
from google.cloud.aiplatform import hyperparameter_tuning as hpt

# cell oM1iC_MfAts1
aiplatform.init(project=PROJECT_ID, location=LOCATION, staging_bucket=BUCKET_URI)

# cell b07b0aeb9309
APPLICATION_DIR = "hptune"
TRAINER_DIR = f"{APPLICATION_DIR}/trainer"

# cell 8d79730faf62 (its Python line)
REPO_NAME = "horses-app"

# cell 21f98973a812
IMAGE_URI = f"{LOCATION}-docker.pkg.dev/{PROJECT_ID}/{REPO_NAME}/horse_human_hptune:latest"

# cell c066b586e18c
# The spec of the worker pools including machine type and Docker image
# Be sure to replace PROJECT_ID in the `image_uri` with your project.

worker_pool_specs = [
    {
        "machine_spec": {
            "machine_type": "n1-standard-4",
            "accelerator_type": "NVIDIA_TESLA_T4",
            "accelerator_count": 1,
        },
        "replica_count": 1,
        "container_spec": {
            "image_uri": f"{LOCATION}-docker.pkg.dev/{PROJECT_ID}/{REPO_NAME}/horse_human_hptune:latest"
        },
    }
]

# cell b129b91536a1
# Dictionary representing parameters to optimize.
# The dictionary key is the parameter_id, which is passed into your training
# job as a command line argument,
# And the dictionary value is the parameter specification of the metric.
parameter_spec = {
    "learning_rate": hpt.DoubleParameterSpec(min=0.001, max=1, scale="log"),
    "momentum": hpt.DoubleParameterSpec(min=0, max=1, scale="linear"),
    "num_units": hpt.DiscreteParameterSpec(values=[64, 128, 512], scale=None),
}

# cell abf4b7253354
# Dictionary representing metrics to optimize.
# The dictionary key is the metric_id, which is reported by your training job,
# And the dictionary value is the optimization goal of the metric.
metric_spec = {"accuracy": "maximize"}

# cell 2bc47496bcfd
my_custom_job = aiplatform.CustomJob(
    display_name="horses-humans-sdk-job",
    worker_pool_specs=worker_pool_specs,
    staging_bucket=BUCKET_URI,
)

# cell d7a1878e7872
hp_job = aiplatform.HyperparameterTuningJob(
    display_name="horses-humans-sdk-job",
    custom_job=my_custom_job,
    metric_spec=metric_spec,
    parameter_spec=parameter_spec,
    max_trial_count=10,
    parallel_trial_count=3,
)

hp_job.run()

# cell sx_vKniMq9ZX (its Python lines)
delete_custom_job = True
delete_application_directory = True
delete_bucket = False

# Delete hptune job
if delete_custom_job:
    try:
        hp_job.delete()
    except Exception as e:
        print(e)
