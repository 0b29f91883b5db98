// Data-plane roles: the app's identity (and optionally a developer) on the storage account, and the
// app's identity as Monitoring Metrics Publisher on Application Insights (needed because the
// component rejects unauthenticated telemetry).

@description('Required. Name of the storage account the roles are granted on.')
param storageAccountName string

@description('Required. Name of the Application Insights component the app publishes telemetry to.')
param applicationInsightsName string

@description('Required. Principal (object) id of the app\'s user-assigned managed identity.')
param identityPrincipalId string

@description('Optional. Principal (object) id of a developer who may use the storage account directly (AZURE_PRINCIPAL_ID); empty grants nothing.')
param developerPrincipalId string = ''

@description('Optional. Type of the developer principal.')
@allowed([
  'User'
  'Group'
  'ServicePrincipal'
])
param developerPrincipalType string = 'User'

// Built-in role definition ids (the same in every tenant). The three data-contributor roles
// Microsoft's "Configure Durable Functions with managed identity" names for the Azure Storage
// provider; they also cover the Functions host (blob leases, timers) and reading the deployment
// package. Not Storage Blob Data Owner: that adds setting ACLs and ownership, which nothing here needs.
var storageRoles = [
  {
    name: 'Storage Blob Data Contributor'
    id: 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'
  }
  {
    name: 'Storage Queue Data Contributor'
    id: '974c5e8b-45b9-4653-ba55-5f855dd0fb88'
  }
  {
    name: 'Storage Table Data Contributor'
    id: '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'
  }
]
var monitoringMetricsPublisherRoleId = '3913510d-42f4-4e42-8a64-420c390055eb'

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

resource identityStorageRoles 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for role in storageRoles: {
  name: guid(storage.id, identityPrincipalId, role.id)
  scope: storage
  properties: {
    description: '${role.name} for the Trawl Function App identity'
    principalId: identityPrincipalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', role.id)
  }
}]

resource developerStorageRoles 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for role in storageRoles: if (!empty(developerPrincipalId)) {
  name: guid(storage.id, developerPrincipalId, role.id)
  scope: storage
  properties: {
    description: '${role.name} for the developer who ran azd'
    principalId: developerPrincipalId
    principalType: developerPrincipalType
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', role.id)
  }
}]

resource identityMetricsPublisher 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(appInsights.id, identityPrincipalId, monitoringMetricsPublisherRoleId)
  scope: appInsights
  properties: {
    description: 'Monitoring Metrics Publisher for the Trawl Function App identity (Entra-authenticated telemetry)'
    principalId: identityPrincipalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', monitoringMetricsPublisherRoleId)
  }
}
